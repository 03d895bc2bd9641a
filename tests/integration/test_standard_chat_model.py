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

    # SmolLM2-135M under JSON-schema decoding sometimes repeats one string value until max_tokens
    # (e.g. '"punchline": "A cat is a cat, and a cat is a cat, ..."'), leaving required keys out:
    # a model-size limit, not an interface one. The same tests pass in most runs; they are kept
    # and allowed to fail rather than switched off, so a real regression still shows as XPASS->FAIL
    # in other suites (tests/integration/test_chat_model_engine.py checks structured output strictly
    # on a prompt the model handles).
    @pytest.mark.xfail(reason="135M model may loop inside a JSON string value", strict=False)
    def test_structured_output_pydantic_2_v1(self, model) -> None:
        super().test_structured_output_pydantic_2_v1(model)

    @pytest.mark.parametrize("schema_type", ["pydantic", "typeddict", "json_schema"])
    @pytest.mark.xfail(reason="135M model may loop inside a JSON string value", strict=False)
    def test_structured_output(self, model, schema_type) -> None:
        super().test_structured_output(model, schema_type)

    @pytest.mark.parametrize("schema_type", ["pydantic", "typeddict", "json_schema"])
    @pytest.mark.xfail(reason="135M model may loop inside a JSON string value", strict=False)
    async def test_structured_output_async(self, model, schema_type) -> None:
        await super().test_structured_output_async(model, schema_type)

    @pytest.mark.xfail(reason="135M model may loop inside a JSON string value", strict=False)
    def test_structured_output_optional_param(self, model) -> None:
        super().test_structured_output_optional_param(model)

    @pytest.mark.xfail(reason="135M model may loop inside a JSON string value", strict=False)
    def test_json_mode(self, model) -> None:
        super().test_json_mode(model)

    # With tool_choice="auto" SmolLM2-135M rarely decides to call a tool (it answers in text);
    # forced tool calls (guided decoding) are tested by test_tool_calling*/ our engine tests.
    @pytest.mark.parametrize("model", [{}, {"output_version": "v1"}], indirect=True)
    @pytest.mark.xfail(reason="135M model seldom chooses to call a tool on its own", strict=False)
    def test_agent_loop(self, model) -> None:
        super().test_agent_loop(model)
