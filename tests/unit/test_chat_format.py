"""Tool rendering and tool-call parsing (no engine)."""

from __future__ import annotations

import pytest

from helium_lc.engine import chat_format as cf

ADD = {"type": "function", "function": {"name": "add", "description": "Add.",
                                        "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}}


def test_valid_and_invalid_tool_calls_are_separated():
    text = ('ok <tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>'
            '<tool_call>{"name": "add", "arguments": {"a": </tool_call>')
    p = cf.parse_tool_calls(text, id_seed="s")
    assert p.content == "ok"
    assert [c["args"] for c in p.tool_calls] == [{"a": 1}]
    assert p.invalid_tool_calls[0]["name"] == "add" and "Could not parse" in p.invalid_tool_calls[0]["error"]
    # ids are deterministic functions of the seed and position
    assert p.tool_calls[0]["id"] == cf.parse_tool_calls(text, id_seed="s").tool_calls[0]["id"]
    assert p.tool_calls[0]["id"] != cf.parse_tool_calls(text, id_seed="t").tool_calls[0]["id"]


def test_unclosed_block_at_end_of_output_is_still_parsed():
    p = cf.parse_tool_calls('<tool_call>{"name": "add", "arguments": {"a": 2}}', id_seed="x")
    assert p.tool_calls[0]["args"] == {"a": 2} and p.content == ""


def test_text_without_blocks_is_untouched():
    assert cf.parse_tool_calls("plain answer", id_seed="x").content == "plain answer"


def test_tools_join_the_system_message_when_the_template_has_no_tool_support():
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "function": {"name": "add", "arguments": '{"a": 2}'}}]},
            {"role": "tool", "content": "4", "tool_call_id": "c1"}]
    out, tools = cf.render_for_template(msgs, [ADD], native_tools=False)
    assert tools is None
    assert out[0]["content"].startswith("Be brief.") and '"name": "add"' in out[0]["content"]
    assert out[2]["content"] == '<tool_call>{"arguments": {"a": 2}, "name": "add"}</tool_call>'
    assert out[3] == {"role": "tool", "content": "4", "tool_call_id": "c1"}


def test_native_templates_get_structured_tools():
    out, tools = cf.render_for_template([{"role": "user", "content": "hi"}], [ADD], native_tools=True)
    assert tools == [ADD] and out == [{"role": "user", "content": "hi"}]


def test_forced_tool_schema_and_unknown_tool_error():
    schema = cf.forced_tool_schema([ADD], "add")
    assert schema["properties"]["name"] == {"const": "add"}
    with pytest.raises(ValueError, match="not among the bound tools"):
        cf.forced_tool_schema([ADD], "mul")


def test_non_text_content_blocks_are_rejected_with_advice():
    with pytest.raises(ValueError, match="text-only model"):
        cf.content_text([{"type": "image_url", "image_url": {"url": "x"}}])


STOP_DEFS = {"Stop": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def _tool_with_defs(name: str, key: str = "$defs", ref_root: str = "$defs") -> dict:
    return {"type": "function", "function": {"name": name, "parameters": {
        "type": "object", "properties": {"stops": {"type": "array", "items": {"$ref": f"#/{ref_root}/Stop"}}},
        key: STOP_DEFS}}}


def test_forced_tool_schema_keeps_defs_at_the_root_so_refs_resolve():
    # One tool: its $defs move to the root, the ref is unchanged and resolves there.
    schema = cf.forced_tool_schema([_tool_with_defs("plan")], "plan")
    assert schema["$defs"] == STOP_DEFS
    assert "$defs" not in schema["properties"]["arguments"]
    assert schema["properties"]["arguments"]["properties"]["stops"]["items"] == {"$ref": "#/$defs/Stop"}


def test_forced_tool_schema_prefixes_defs_of_several_tools_and_reads_draft7_definitions():
    # Two tools define "Stop": each keeps its own, renamed "<tool>.Stop", refs rewritten.
    schema = cf.forced_tool_schema([_tool_with_defs("a"), _tool_with_defs("b", "definitions", "definitions")], None)
    assert sorted(schema["$defs"]) == ["a.Stop", "b.Stop"]
    refs = [o["properties"]["arguments"]["properties"]["stops"]["items"]["$ref"] for o in schema["anyOf"]]
    assert refs == ["#/$defs/a.Stop", "#/$defs/b.Stop"]
