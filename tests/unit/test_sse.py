"""The shared SSE encoder and incremental parser, checked against the anthropic SDK's decoder."""

from __future__ import annotations

import json
import time

import pytest
from anthropic._streaming import SSEDecoder

from proxyapi.providers.sse import ServerEvent, SSEParser, sse_event


def parse(raw: bytes, step: int | None = None) -> list[ServerEvent]:
    """Parse a whole stream, fed in pieces of ``step`` bytes (or whole), then closed."""
    parser = SSEParser()
    events: list[ServerEvent] = []
    pieces = [raw] if step is None else [raw[i : i + step] for i in range(0, len(raw), step)]
    for piece in pieces:
        events.extend(parser.feed(piece))
    events.extend(parser.close())
    return events


def every_chunking(raw: bytes) -> list[list[ServerEvent]]:
    """The events of ``raw`` whole, byte by byte, in threes, and cut at every single offset."""
    results = [parse(raw), parse(raw, 1), parse(raw, 3)]
    for cut in range(1, len(raw)):
        parser = SSEParser()
        results.append(parser.feed(raw[:cut]) + parser.feed(raw[cut:]) + parser.close())
    return results


# ---------------------------------------------------------------------------------- encoder


def test_sse_event_encodes_a_mapping_as_compact_json() -> None:
    assert sse_event({"a": 1, "b": [1, 2]}) == b'data: {"a":1,"b":[1,2]}\n\n'


def test_sse_event_encodes_a_list() -> None:
    assert sse_event([1, "x"]) == b'data: [1,"x"]\n\n'


def test_sse_event_passes_bytes_through() -> None:
    assert sse_event(b"[DONE]") == b"data: [DONE]\n\n"


def test_sse_event_names_the_event_first() -> None:
    assert sse_event({"type": "ping"}, "ping") == b'event: ping\ndata: {"type":"ping"}\n\n'


def test_sse_event_keeps_non_ascii_as_utf8() -> None:
    assert sse_event({"t": "héllo ✓"}) == 'data: {"t":"héllo ✓"}\n\n'.encode()


def test_sse_event_escapes_lone_surrogates() -> None:
    raw = sse_event({"t": "\ud800"})
    assert raw == b'data: {"t":"\\ud800"}\n\n'
    assert json.loads(parse(raw)[0].data) == {"t": "\ud800"}


@pytest.mark.parametrize("data", [b"one\ntwo", b"one\r\ntwo", b"one\rtwo"])
def test_sse_event_writes_each_line_of_bytes_as_a_data_line(data: bytes) -> None:
    raw = sse_event(data, "multi")
    assert raw == b"event: multi\ndata: one\ndata: two\n\n"
    assert parse(raw) == [ServerEvent("multi", b"one\ntwo")]


def test_sse_event_of_empty_bytes_is_still_an_event() -> None:
    assert sse_event(b"") == b"data: \n\n"
    assert parse(sse_event(b"")) == [ServerEvent("", b"")]


@pytest.mark.parametrize("name", ["a\nb", "a\rb"])
def test_sse_event_refuses_an_event_name_with_a_line_break(name: str) -> None:
    with pytest.raises(ValueError):
        sse_event(b"x", name)


def test_sse_event_output_is_what_the_anthropic_sdk_decodes() -> None:
    raw = sse_event({"type": "message_stop"}, "message_stop") + sse_event(b"a\nb", "x")
    events = list(SSEDecoder().iter_bytes(iter([raw])))
    assert [(e.event, e.data) for e in events] == [
        ("message_stop", '{"type":"message_stop"}'),
        ("x", "a\nb"),
    ]


# ---------------------------------------------------------------------------------- parser


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_parser_reads_every_line_ending_however_the_input_is_cut(newline: bytes) -> None:
    raw = newline.join(
        [b"event: one", b"data: 1", b"", b"data: 2", b"data: 3", b"", b": comment", b"", b""]
    )
    expected = [ServerEvent("one", b"1"), ServerEvent("", b"2\n3")]
    for events in every_chunking(raw):
        assert events == expected


def test_parser_pairs_cr_and_lf_split_across_pieces() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n") == []  # the LF ends no second line: no blank line, no dispatch
    assert parser.feed(b"data: b\r") == []
    assert parser.feed(b"\n\r") == [ServerEvent("", b"a\nb")]
    assert parser.feed(b"\n") == []
    assert parser.close() == []


def test_parser_empty_pieces_do_not_break_a_cr_lf_pair() -> None:
    parser = SSEParser()
    events = parser.feed(b"data: a\r") + parser.feed(b"") + parser.feed(b"\n\r\n")
    assert events == [ServerEvent("", b"a")]


def test_parser_dispatches_at_a_cr_without_waiting_for_a_possible_lf() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r\r") == [ServerEvent("", b"a")]


def test_parser_keeps_utf8_split_inside_a_character() -> None:
    text = "é✓🙂"
    raw = sse_event({"t": text}, "ünï")
    for events in every_chunking(raw):
        assert [(e.event, json.loads(e.data)) for e in events] == [("ünï", {"t": text})]


def test_parser_ignores_comments_and_unknown_fields() -> None:
    raw = b": keep-alive\nid: 7\nretry: 100\nfoo: bar\ndata: x\n:tail\n\n"
    assert parse(raw) == [ServerEvent("", b"x")]


def test_parser_drops_events_without_data_lines() -> None:
    raw = b"event: ping\n\n: only a comment\n\nevent: real\ndata: 1\n\n"
    assert parse(raw) == [ServerEvent("real", b"1")]


def test_parser_resets_the_event_name_after_each_dispatch() -> None:
    raw = b"event: first\ndata: 1\n\ndata: 2\n\n"
    assert parse(raw) == [ServerEvent("first", b"1"), ServerEvent("", b"2")]


def test_parser_event_name_without_data_does_not_leak_into_the_next_event() -> None:
    raw = b"event: ping\n\ndata: 2\n\n"
    assert parse(raw) == [ServerEvent("", b"2")]


@pytest.mark.parametrize(
    ("line", "data"),
    [
        (b"data:x", b"x"),  # no space
        (b"data:  x", b" x"),  # only one space is dropped
        (b"data", b""),  # a field without a colon has an empty value
        (b"data:", b""),
        (b'data: {"a": "b:c"}', b'{"a": "b:c"}'),  # colons after the first are data
    ],
)
def test_parser_field_value_rules(line: bytes, data: bytes) -> None:
    assert parse(line + b"\n\n") == [ServerEvent("", data)]


def test_parser_joins_empty_data_lines_too() -> None:
    assert parse(b"data:\ndata:\n\n") == [ServerEvent("", b"\n")]


def test_parser_skips_a_leading_bom_however_it_is_cut() -> None:
    raw = b"\xef\xbb\xbfdata: 1\n\n"
    for events in every_chunking(raw):
        assert events == [ServerEvent("", b"1")]


def test_parser_keeps_a_bom_that_is_not_at_the_start() -> None:
    assert parse(b"data: 1\n\n\xef\xbb\xbfdata: 2\n\n") == [ServerEvent("", b"1")]


def test_parser_a_stream_shorter_than_a_bom_is_data_after_all() -> None:
    parser = SSEParser()
    assert parser.feed(b"\xef") == []
    assert parser.close() == []  # one byte, no field: nothing to dispatch, no error


def test_close_returns_the_last_event_without_its_blank_line() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: 1\n\ndata: 2\n") == [ServerEvent("", b"1")]
    assert parser.close() == [ServerEvent("", b"2")]


def test_close_reads_a_last_line_without_its_line_end() -> None:
    parser = SSEParser()
    assert parser.feed(b'event: e\ndata: {"cut') == []
    assert parser.close() == [ServerEvent("e", b'{"cut')]


def test_close_after_a_whole_stream_returns_nothing() -> None:
    parser = SSEParser()
    parser.feed(b"data: 1\n\n")
    assert parser.close() == []


def test_close_of_an_empty_stream_returns_nothing() -> None:
    assert SSEParser().close() == []


def test_parser_agrees_with_the_anthropic_sdk_on_a_real_stream() -> None:
    raw = (
        b'event: message_start\r\ndata: {"type":"message_start"}\r\n\r\n'
        b"event: ping\ndata: {}\n\n"
        b': comment\rdata: {"a":\rdata: 1}\r\r'
    )
    ours = [(e.event or None, e.data.decode()) for e in parse(raw)]
    sdk = [(e.event, e.data) for e in SSEDecoder().iter_bytes(iter([raw]))]
    assert ours == sdk


def test_parser_is_linear_in_the_input() -> None:
    # One 16 MB line in 256-byte pieces: a parser that rescanned or copied its buffer on every
    # feed would touch some 500 GB; a linear one touches 16 MB.
    piece = b"x" * 256
    parser = SSEParser()
    started = time.perf_counter()
    assert parser.feed(b"data: ") == []
    for _ in range(65_536):
        parser.feed(piece)
    events = parser.feed(b"\n\n")
    assert time.perf_counter() - started < 5
    assert len(events) == 1 and len(events[0].data) == 16 * 1024 * 1024


def test_parser_many_small_events_in_one_piece() -> None:
    raw = b"".join(sse_event({"n": n}) for n in range(10_000))
    events = SSEParser().feed(raw)
    assert [json.loads(e.data)["n"] for e in events] == list(range(10_000))
