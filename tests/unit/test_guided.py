"""engine.guided: bounded retry schemas for guided decoding that ran out of max_tokens."""

from __future__ import annotations

import json

import pytest

from helium_lc.engine import guided
from helium_lc.engine.types import GenerationRequest, GenerationResult, GuidedOutputTruncatedError, SamplingSpec


def test_one_string_gets_the_budget_left_after_structure():
    # {"q": <string>}: structure = 2 (object) + len("q")//2 + 2 (key) + 2 (string) = 6 tokens,
    # so the string may take 40 - 6 = 34 characters.
    b = guided.bound_schema({"type": "object", "properties": {"q": {"type": "string"}}}, max_tokens=40)
    assert b["properties"]["q"]["maxLength"] == 34


def test_smaller_given_bounds_are_kept_and_pattern_strings_left_alone():
    schema = {"type": "object", "properties": {
        "a": {"type": "string", "maxLength": 3, "minLength": 2},
        "b": {"type": "string", "pattern": "^x+$"},
        "n": {"type": "integer", "maximum": 7}}}
    b = guided.bound_schema(schema, max_tokens=100)
    assert b["properties"]["a"] == {"type": "string", "maxLength": 3, "minLength": 2}
    assert b["properties"]["b"] == {"type": "string", "pattern": "^x+$"}
    assert b["properties"]["n"] == {"type": "integer", "maximum": 7, "minimum": -guided.MAX_ABS_INTEGER}


def test_refs_are_followed_once_and_alternatives_take_the_widest():
    # anyOf of 1 string and of an array of 4 strings (via $ref): the budget is split in 4.
    schema = {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/L"}],
              "$defs": {"L": {"type": "array", "items": {"type": "string"}}}}
    b = guided.bound_schema(schema, max_tokens=200)
    inner = b["$defs"]["L"]
    assert inner["maxItems"] == guided.MAX_ARRAY_ITEMS
    assert b["anyOf"][0]["maxLength"] == inner["items"]["maxLength"]
    assert inner["items"]["maxLength"] * 4 <= 200


def test_recursive_schemas_terminate():
    schema = {"$ref": "#/$defs/T", "$defs": {"T": {"type": "object", "properties": {
        "name": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#/$defs/T"}}}}}}
    b = guided.bound_schema(schema, max_tokens=64)
    assert b["$defs"]["T"]["properties"]["name"]["maxLength"] >= 1


def _result(finish: str, text: str = '{"q": "aaaa') -> GenerationResult:
    return GenerationResult("r", text, (1, 2), 3, 0, finish, 0)


def test_retry_only_for_guided_requests_cut_off_by_max_tokens():
    schema = {"type": "object", "properties": {"q": {"type": "string"}}}
    req = GenerationRequest((1, 2, 3), SamplingSpec(max_tokens=40, json_schema=json.dumps(schema)))
    assert guided.retry_request(req, _result("stop")) is None
    assert guided.retry_request(GenerationRequest((1,), SamplingSpec()), _result("length")) is None
    assert not req.sampling.compact_json
    retry = guided.retry_request(req, _result("length"))
    assert retry is not None and retry.prompt_token_ids == req.prompt_token_ids
    assert json.loads(retry.sampling.json_schema)["properties"]["q"]["maxLength"] == 34
    assert retry.sampling.compact_json and retry.sampling.max_tokens == 40
    assert retry.request_id != req.request_id and retry.sampling.cache_key() != req.sampling.cache_key()


def test_still_truncated_raises_an_error_naming_max_tokens():
    req = GenerationRequest((1,), SamplingSpec(max_tokens=16, json_schema='{"type": "object"}'))
    guided.check_finished(req, _result("stop"))  # finished: nothing raised
    with pytest.raises(GuidedOutputTruncatedError, match="max_tokens=16"):
        guided.check_finished(req, _result("length"))
