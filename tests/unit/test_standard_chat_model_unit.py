"""langchain-tests' standard unit suite for HeliumChatModel (no engine is started)."""

from __future__ import annotations

from langchain_tests.unit_tests import ChatModelUnitTests

from helium_lc.chat_model import HeliumChatModel


class TestHeliumChatModelUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[HeliumChatModel]:
        return HeliumChatModel

    @property
    def chat_model_params(self) -> dict:
        return {}

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supports_model_override(self) -> bool:
        return False  # a pool serves one model; a per-call `model` would silently be ignored
