"""Usage in one set of units from each provider's way of counting."""

from __future__ import annotations

from proxyapi.providers.anthropic.passthrough import MessagesPassThrough
from proxyapi.providers.base import Usage
from proxyapi.providers.sse import sse_event


def test_openai_counts_cached_tokens_inside_the_prompt() -> None:
    usage = Usage.from_openai(
        {
            "prompt_tokens": 2006,
            "completion_tokens": 300,
            "total_tokens": 2306,
            "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 256},
        },
        "gpt-4o-2024-08-06",
    )
    assert usage == Usage(2006, 300, 2306, cache_read_tokens=1920, reasoning_tokens=256)
    assert usage is not None and usage.model == "gpt-4o-2024-08-06"


def test_a_compatible_hosts_cache_writes_are_read() -> None:
    usage = Usage.from_openai(
        {
            "prompt_tokens": 100,
            "completion_tokens": 1,
            "prompt_tokens_details": {"cache_write_tokens": 80},
        }
    )
    assert usage == Usage(100, 1, 101, cache_write_tokens=80)


def test_anthropic_cache_tokens_are_added_to_the_input_and_split_by_lifetime() -> None:
    usage = Usage.from_anthropic(
        {
            "input_tokens": 50,
            "cache_creation_input_tokens": 1000,
            "cache_read_input_tokens": 2000,
            "cache_creation": {"ephemeral_5m_input_tokens": 400, "ephemeral_1h_input_tokens": 600},
            "output_tokens": 10,
        }
    )
    assert usage == Usage(
        3050, 10, 3060, cache_read_tokens=2000, cache_write_tokens=400, cache_write_1h_tokens=600
    )
    # Without the split, every write is a 5-minute one (Anthropic's default lifetime).
    plain = Usage.from_anthropic({"input_tokens": 5, "cache_creation_input_tokens": 7})
    assert plain == Usage(12, 0, 12, cache_write_tokens=7)


def test_hostile_counts_are_zero() -> None:
    usage = Usage.from_anthropic(
        {
            "input_tokens": -5,
            "output_tokens": True,
            "cache_read_input_tokens": "9",
            "cache_creation": {"ephemeral_1h_input_tokens": 10**9},
        }
    )
    assert usage == Usage(0, 0, 0)
    assert Usage.from_openai([1]) is None and Usage.from_responses("x") is None


def test_a_messages_stream_reports_the_cache_split_of_its_start_and_its_end() -> None:
    """message_delta's counts are cumulative; message_start's cache split survives them."""
    translator = MessagesPassThrough("claude")
    start = {
        "type": "message_start",
        "message": {
            "model": "claude-sonnet-4-5-20250929",
            "usage": {
                "input_tokens": 20,
                "cache_creation_input_tokens": 300,
                "cache_read_input_tokens": 0,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": 0,
                    "ephemeral_1h_input_tokens": 300,
                },
                "output_tokens": 1,
            },
        },
    }
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn"},
        "usage": {"output_tokens": 42},
    }
    events = [
        start,
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        delta,
        {"type": "message_stop"},
    ]
    for event in events:
        translator.feed(sse_event(event, event["type"]))
    assert translator.complete
    assert translator.usage == Usage(320, 42, 362, cache_write_1h_tokens=300)
    assert translator.usage is not None
    assert translator.usage.model == "claude-sonnet-4-5-20250929"
