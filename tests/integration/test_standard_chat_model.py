"""langchain-tests' standard integration suite for HeliumChatModel on the real engine.

Capabilities switched off, each with its reason:
- image/audio/video/PDF inputs: SmolLM2-135M is a text-only model.
- anthropic-style inputs: content blocks of other providers are not rendered by this chat template.
"""

from __future__ import annotations

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests

from helium_lc.chat_model import HeliumChatModel

pytestmark = [pytest.mark.engine, pytest.mark.usefixtures("pool")]


class TestHeliumChatModelIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[HeliumChatModel]:
        return HeliumChatModel

    @property
    def chat_model_params(self) -> dict:
        return {}

    @property
    def has_tool_choice(self) -> bool:
        return True  # forced tool calls use JSON-schema guided decoding

    @property
    def supports_json_mode(self) -> bool:
        return True  # response_format={"type": "json_object"} -> guided JSON

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supports_model_override(self) -> bool:
        return False  # a pool serves one model; a per-call `model` would silently be ignored

    @property
    def supports_anthropic_inputs(self) -> bool:
        return False  # other providers' content blocks are not rendered by this chat template

    @property
    def supports_image_inputs(self) -> bool:
        return False  # text-only model

    @property
    def supports_image_tool_message(self) -> bool:
        return False  # text-only model

    # Structured output (json_schema / function_calling) is no longer marked: a guided call
    # that max_tokens cuts off (the 135M model can loop inside a string) is retried with
    # bounded lengths (helium_lc.engine.guided), so the keys are always there.
    # json_mode constrains the output only to *some* JSON object: which keys it has is the
    # model's choice, and the 135M model often does not pick "setup"/"punchline" (measured
    # 2026-12-01: failed in each of 3 runs, e.g. '{"setup": "The cat was having..."}' without
    # "punchline").
    @pytest.mark.xfail(reason="json_mode leaves the keys to the 135M model", strict=False)
    def test_json_mode(self, model) -> None:
        super().test_json_mode(model)

    # With tool_choice="auto" SmolLM2-135M rarely decides to call a tool (it answers in text);
    # forced tool calls (guided decoding) are tested by test_tool_calling*/ our engine tests.
    @pytest.mark.parametrize("model", [{}, {"output_version": "v1"}], indirect=True)
    @pytest.mark.xfail(reason="135M model seldom chooses to call a tool on its own", strict=False)
    def test_agent_loop(self, model) -> None:
        super().test_agent_loop(model)
