"""The engines' log level rule (helium_lc.engine.logs)."""

import pytest

from helium_lc.engine import logs


def test_default_is_errors_only_with_torch_and_loader_noise_hidden() -> None:
    s = logs.engine_log_settings(environ={})
    assert s["VLLM_LOGGING_LEVEL"] == "ERROR"
    assert s["TORCH_CPP_LOG_LEVEL"] == "ERROR" and s["TORCH_LOGS"] == "-torch"
    assert logs.engine_loads_quietly(environ={})


def test_helium_level_wins_over_verbose_and_vllm_level() -> None:
    environ = {"HELIUM_LC_LOG_LEVEL": " Warning ", "VLLM_LOGGING_LEVEL": "DEBUG"}
    assert logs.engine_log_level(verbose=True, environ=environ) == "WARNING"
    assert logs.engine_log_settings(environ=environ) == {"VLLM_LOGGING_LEVEL": "WARNING"}
    assert not logs.engine_loads_quietly(environ=environ)


def test_verbose_is_info_and_a_users_vllm_level_is_kept() -> None:
    assert logs.engine_log_level(verbose=True, environ={}) == "INFO"
    assert logs.engine_log_level(environ={"VLLM_LOGGING_LEVEL": "info"}) == "INFO"


def test_users_torch_settings_are_kept() -> None:
    s = logs.engine_log_settings(environ={"TORCH_LOGS": "+dynamo"})
    assert "TORCH_LOGS" not in s and s["TORCH_CPP_LOG_LEVEL"] == "ERROR"


def test_bad_level_names_the_variable_and_the_choices() -> None:
    with pytest.raises(ValueError, match=r"HELIUM_LC_LOG_LEVEL='loud'.*debug, info, warning, error, critical"):
        logs.engine_log_level(environ={"HELIUM_LC_LOG_LEVEL": "loud"})
