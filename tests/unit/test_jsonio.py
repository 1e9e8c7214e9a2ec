"""The strict reader of client bodies and the one encoder of everything sent."""

from __future__ import annotations

import json

import pytest

from proxyapi.jsonio import MAX_DEPTH, JSONRejected, encode_json, parse_body


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b'{"t": NaN}', "NaN is not a JSON value"),
        (b'{"t": Infinity}', "Infinity is not a JSON value"),
        (b'{"t": -Infinity}', "-Infinity is not a JSON value"),
        (b'{"t": 1e400}', "the number 1e400 is too large"),
        (b'{"t": -1e400}', "too large"),
        (b'{"n": ' + b"9" * 4301 + b"}", "too many digits"),
        (nested(MAX_DEPTH + 1), f"nested more than {MAX_DEPTH} levels"),
        (nested(5_000), "nested more than"),
        (nested(100_000), "nested more than"),
        (b'{"a": ' * 200 + b"1" + b"}" * 200, "nested more than"),
        (b"\xff", "not valid UTF-8"),
        (b"{bad", "Expecting property name enclosed in double quotes at line 1 column 2"),
    ],
)
def test_what_is_not_json_is_rejected_with_a_reason(raw: bytes, fragment: str) -> None:
    with pytest.raises(JSONRejected, match=None) as info:
        parse_body(raw)
    assert fragment in str(info.value)


def test_what_is_json_parses_as_json_does() -> None:
    assert parse_body(nested(MAX_DEPTH)) == json.loads(nested(MAX_DEPTH))
    assert parse_body(b'{"t": 0.7, "n": 12, "s": "caf\\u00e9"}') == {"t": 0.7, "n": 12, "s": "café"}
    # Brackets inside strings are not nesting.
    assert parse_body(b'"' + b"[" * 500 + b'"') == "[" * 500
    assert parse_body(b'{"n": ' + b"9" * 4300 + b"}")["n"] > 0


def test_a_lone_surrogate_is_kept_and_written_as_an_escape() -> None:
    value = parse_body(b'{"content": "x\\ud800y", "emoji": "\\ud83d\\ude00"}')
    assert value["content"] == "x\ud800y"
    raw = encode_json(value)
    assert b"\\ud800" in raw and raw.isascii()
    assert json.loads(raw) == value  # the same JSON the client sent, nothing lost


def test_encode_is_compact_utf8_without_surrogates() -> None:
    assert encode_json({"a": "café", "b": [1, 2]}) == '{"a":"café","b":[1,2]}'.encode()
    assert encode_json({"b": 1, "a": 2}, sort_keys=True) == b'{"a":2,"b":1}'
