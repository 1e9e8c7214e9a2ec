"""Token budgets' estimates and caps for each dialect (the counting itself: test_budget_store)."""

from __future__ import annotations

from proxyapi.budgets import Budgets, estimate_prompt, text_tokens
from proxyapi.config import KeyConfig, parse_config
from proxyapi.providers.base import ClientBody, Operation

KEY_HASH = "a" * 64


def budgets(max_tokens: int = 300) -> tuple[Budgets, KeyConfig]:
    config = parse_config(
        {
            "auth": {
                "keys": [
                    {
                        "name": "k",
                        "sha256": KEY_HASH,
                        "token_limits": ["100000/hour"],
                        "max_tokens": max_tokens,
                    }
                ]
            }
        },
        {},
    )
    return Budgets(config, None), config.auth.keys[0]


def test_a_responses_request_without_a_cap_gets_the_keys_as_max_output_tokens() -> None:
    b, key = budgets()
    ticket, sent = b.reserve(key, Operation.RESPONSES, {"model": "m", "input": "hi"})
    assert ticket is not None
    assert sent["max_output_tokens"] == 300 and "max_tokens" not in sent


def test_a_responses_request_with_its_own_cap_keeps_it() -> None:
    b, key = budgets()
    body = {"model": "m", "input": "hi", "max_output_tokens": 20}
    ticket, sent = b.reserve(key, Operation.RESPONSES, body)
    assert sent is body
    assert ticket is not None and ticket.reserved == ticket.prompt + 20


def test_the_cap_keeps_a_client_bodys_dialect_headers() -> None:
    """A Messages pass-through with a budget still sends the client's anthropic-beta."""
    b, key = budgets()
    body = ClientBody(
        {"model": "claude", "messages": [{"role": "user", "content": "hi"}]},
        b'{"model":"claude"}',
        {"anthropic-beta": "interleaved-thinking-2025-05-14"},
    )
    _, sent = b.reserve(key, Operation.MESSAGES, body)
    assert isinstance(sent, ClientBody)
    assert sent["max_tokens"] == 300
    assert sent.headers == {"anthropic-beta": "interleaved-thinking-2025-05-14"}
    assert sent.raw == b""  # the bytes no longer say what is sent


def test_instructions_count_in_a_responses_prompt() -> None:
    bare = estimate_prompt(Operation.RESPONSES, {"input": "hi"})
    told = estimate_prompt(Operation.RESPONSES, {"input": "hi", "instructions": "x" * 300})
    assert told >= bare + 100


def test_relayed_responses_deltas_count_as_text() -> None:
    events = (
        b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
        b'"delta":"' + b"word " * 40 + b'","sequence_number":4}\n\n'
    )
    assert text_tokens(events) == 50
    # Chat and Messages deltas are objects: their text is counted once, by its own field.
    assert text_tokens(b'{"delta":{"content":"abcd"}}') == 1
