"""Pricing: the config section, and answers priced from the providers' own usage payloads.

The payloads are the providers' documented examples; each expected cost is worked out by hand
from the provider's published prices (USD per million tokens), so a wrong unit mapping, a
missed cache discount or a 1h write priced as a 5-minute one shows as a wrong amount.
"""

from __future__ import annotations

import math
import socket
from datetime import UTC, datetime
from typing import Any

import genai_prices
import pytest
from genai_prices.data_snapshot import get_snapshot

from proxyapi.config import ConfigError, parse_config
from proxyapi.config.model import PriceOverride
from proxyapi.config.pricing import parse_pricing
from proxyapi.pricing import Price, Pricer, _table_terms, cost_at
from proxyapi.providers.usage import Usage

PROVIDERS = parse_config(
    {
        "providers": [
            {
                "name": "openai",
                "base_url": "https://api.openai.com/v1",
                "models": ["gpt-4o", "o1", "o4-mini", "text-embedding-3-small", "whisper-1"],
            },
            {
                "name": "azure",
                "type": "azure",
                "base_url": "https://example-resource.openai.azure.com",
                "models": ["o1", "gpt-4o"],
            },
            {
                "name": "anthropic",
                "type": "anthropic",
                "base_url": "https://api.anthropic.com",
                "models": ["claude-sonnet-4-5"],
            },
            {
                "name": "groq",
                "base_url": "https://api.groq.com/openai/v1",
                "models": ["llama-3.3-70b-versatile"],
            },
            {"name": "perplexity", "base_url": "https://api.perplexity.ai", "models": ["sonar"]},
            {
                "name": "vllm",
                "base_url": "http://localhost:8000/v1",
                "models": ["gpt-4o", "llama-3*"],
            },
        ]
    },
    {},
).providers


def pricer(**pricing: Any) -> Pricer:
    return Pricer(parse_pricing(pricing), PROVIDERS)


def approx(value: float) -> Any:
    return pytest.approx(value, rel=1e-12)


# OpenAI, Prompt caching guide: a Chat Completions answer whose prompt hit the cache.
OPENAI_CHAT_CACHED = {
    "prompt_tokens": 2006,
    "completion_tokens": 300,
    "total_tokens": 2306,
    "prompt_tokens_details": {"cached_tokens": 1920},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
# OpenAI, Reasoning guide (Chat Completions): reasoning tokens are inside completion_tokens.
OPENAI_CHAT_REASONING = {
    "total_tokens": 1000,
    "prompt_tokens": 400,
    "completion_tokens": 600,
    "completion_tokens_details": {"reasoning_tokens": 500},
}
# OpenAI, Reasoning guide (Responses API, o4-mini).
OPENAI_RESPONSES = {
    "input_tokens": 75,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 1186,
    "output_tokens_details": {"reasoning_tokens": 1024},
    "total_tokens": 1261,
}
# Anthropic, Prompt caching, "Mixing different TTLs": input_tokens are only the uncached ones.
ANTHROPIC_MIXED_TTL = {
    "input_tokens": 2048,
    "cache_read_input_tokens": 1800,
    "cache_creation_input_tokens": 248,
    "output_tokens": 503,
    "cache_creation": {"ephemeral_1h_input_tokens": 100, "ephemeral_5m_input_tokens": 148},
}
# Azure OpenAI, Prompt caching (o1-2024-12-17).
AZURE_CHAT_CACHED = {
    "completion_tokens": 1518,
    "prompt_tokens": 1566,
    "total_tokens": 3084,
    "completion_tokens_details": {"reasoning_tokens": 576},
    "prompt_tokens_details": {"cached_tokens": 1408},
}


def read(kind: str, payload: dict[str, Any], model: str | None = None) -> Usage:
    reader = {
        "openai": Usage.from_openai,
        "responses": Usage.from_responses,
        "anthropic": Usage.from_anthropic,
    }[kind]
    usage = reader(payload, model)
    assert usage is not None
    return usage


# --- answers priced from the table, against the providers' published prices ---


def test_openai_chat_cached_prompt_gpt_4o() -> None:
    usage = read("openai", OPENAI_CHAT_CACHED, "gpt-4o-2024-08-06")
    # gpt-4o: $2.50 input, $1.25 cached input, $10 output.
    expected = (2006 - 1920) * 2.50 / 1e6 + 1920 * 1.25 / 1e6 + 300 * 10.00 / 1e6
    assert pricer().cost("openai", "gpt-4o", usage) == approx(expected)


def test_openai_chat_reasoning_is_priced_as_output_o1() -> None:
    usage = read("openai", OPENAI_CHAT_REASONING, "o1-2024-12-17")
    assert usage.reasoning_tokens == 500
    # o1: $15 input, $60 output; the 500 reasoning tokens are among the 600 output tokens.
    expected = 400 * 15.00 / 1e6 + 600 * 60.00 / 1e6
    assert pricer().cost("openai", "o1", usage) == approx(expected)


def test_openai_responses_usage_o4_mini() -> None:
    usage = read("responses", OPENAI_RESPONSES)
    # o4-mini: $1.10 input, $4.40 output (1024 of the 1186 are reasoning, priced as output).
    expected = 75 * 1.10 / 1e6 + 1186 * 4.40 / 1e6
    assert pricer().cost("openai", "o4-mini", usage) == approx(expected)


def test_anthropic_reads_5_minute_and_1_hour_writes_claude_sonnet_4_5() -> None:
    usage = read("anthropic", ANTHROPIC_MIXED_TTL, "claude-sonnet-4-5-20250929")
    # Claude Sonnet 4.5: $3 input, $0.30 cache read, $3.75 5-minute write, $6 1-hour write,
    # $15 output.
    expected = (
        2048 * 3.00 / 1e6
        + 1800 * 0.30 / 1e6
        + 148 * 3.75 / 1e6
        + 100 * 6.00 / 1e6
        + 503 * 15.00 / 1e6
    )
    assert pricer().cost("anthropic", "claude-sonnet-4-5", usage) == approx(expected)


def test_anthropic_writes_without_a_split_are_5_minute_writes() -> None:
    payload = {k: v for k, v in ANTHROPIC_MIXED_TTL.items() if k != "cache_creation"}
    usage = read("anthropic", payload)
    expected = 2048 * 3.00 / 1e6 + 1800 * 0.30 / 1e6 + 248 * 3.75 / 1e6 + 503 * 15.00 / 1e6
    assert pricer().cost("anthropic", "claude-sonnet-4-5", usage) == approx(expected)


def test_anthropic_long_context_prices_every_token_at_the_higher_tier() -> None:
    # A prompt over 200K input tokens (cached ones count) costs the long-context price on all
    # of it: $6 input, $0.60 cache read, $7.50 5-minute write, $12 1-hour write, $22.50 output.
    usage = read(
        "anthropic",
        {
            "input_tokens": 150_000,
            "cache_read_input_tokens": 40_000,
            "cache_creation_input_tokens": 20_000,
            "cache_creation": {
                "ephemeral_5m_input_tokens": 15_000,
                "ephemeral_1h_input_tokens": 5_000,
            },
            "output_tokens": 2_000,
        },
    )
    expected = (
        150_000 * 6.00 / 1e6
        + 40_000 * 0.60 / 1e6
        + 15_000 * 7.50 / 1e6
        + 5_000 * 12.00 / 1e6
        + 2_000 * 22.50 / 1e6
    )
    assert pricer().cost("anthropic", "claude-sonnet-4-5", usage) == approx(expected)


def test_azure_chat_cached_prompt_o1() -> None:
    usage = read("openai", AZURE_CHAT_CACHED, "o1-2024-12-17")
    # Azure o1 (Global): $15 input, $7.50 cached input, $60 output.
    expected = (1566 - 1408) * 15.00 / 1e6 + 1408 * 7.50 / 1e6 + 1518 * 60.00 / 1e6
    assert pricer().cost("azure", "o1", usage) == approx(expected)


def test_openai_compatible_hosts_are_found_by_url() -> None:
    usage = Usage(prompt_tokens=1000, completion_tokens=500)
    # Groq's Llama 3.3 70B Versatile: $0.59 input, $0.79 output.
    expected = 1000 * 0.59 / 1e6 + 500 * 0.79 / 1e6
    assert pricer().cost("groq", "llama-3.3-70b-versatile", usage) == approx(expected)
    # Perplexity's Sonar: $1 input, $1 output, and $12 per thousand requests.
    expected = 1000 * 1.00 / 1e6 + 500 * 1.00 / 1e6 + 12 / 1000
    assert pricer().cost("perplexity", "sonar", usage) == approx(expected)


def test_table_prices_show_the_first_tier_and_fall_back_like_genai_prices() -> None:
    p = pricer()
    assert p.price("anthropic", "claude-sonnet-4-5") == Price(
        3.0, 15.0, 0.30, 3.75, 6.0, source="genai-prices"
    )
    # No cache-write price at OpenAI: writes cost the input price.
    assert p.price("openai", "gpt-4o") == Price(2.5, 10.0, 1.25, 2.5, 2.5, source="genai-prices")
    # An embedding model has no output price and answers no output tokens.
    assert p.price("openai", "text-embedding-3-small") == Price(
        0.02, 0.0, 0.02, 0.02, 0.02, source="genai-prices"
    )


def test_billed_model_is_priced_first_then_the_requested_one() -> None:
    p = pricer()
    # gpt-4o-2024-05-13 kept its launch price ($5 input, $15 output): the billed name wins.
    usage = Usage(prompt_tokens=1000, completion_tokens=100, model="gpt-4o-2024-05-13")
    assert p.cost("openai", "gpt-4o", usage) == approx(1000 * 5.00 / 1e6 + 100 * 15.00 / 1e6)
    # A billed name the table does not know: the requested model's price.
    usage = Usage(prompt_tokens=1000, completion_tokens=100, model="my-deployment-name")
    assert p.cost("openai", "gpt-4o", usage) == approx(1000 * 2.50 / 1e6 + 100 * 10.00 / 1e6)


def test_inconsistent_cache_counts_do_not_raise() -> None:
    # A host that reports more cached tokens than prompt tokens: priced, not a 500.
    usage = Usage(prompt_tokens=10, completion_tokens=5, cache_read_tokens=50)
    assert pricer().cost("openai", "gpt-4o", usage) == approx(50 * 1.25 / 1e6 + 5 * 10.0 / 1e6)


# --- what is unpriced ---


def test_unknown_model_is_unpriced_never_free() -> None:
    p = pricer()
    usage = Usage(prompt_tokens=1000, completion_tokens=100)
    assert p.price("openai", "no-such-model") is None
    assert p.cost("openai", "no-such-model", usage) is None
    assert p.estimate("openai", "no-such-model", 1000, 100) is None
    assert p.cost("no-such-provider", "gpt-4o", usage) is None


def test_model_priced_in_other_units_is_unpriced() -> None:
    # whisper-1 is priced per audio hour; the gateway counts tokens.
    assert pricer().cost("openai", "whisper-1", Usage(prompt_tokens=10)) is None


def test_local_vllm_is_unpriced_even_for_an_openai_model_name() -> None:
    p = pricer()
    assert p.price("vllm", "gpt-4o") is None
    assert p.cost("vllm", "gpt-4o", Usage(prompt_tokens=1000, completion_tokens=100)) is None


# --- config prices ---


def test_config_price_beats_the_table() -> None:
    p = pricer(
        prices=[
            {"provider": "openai", "model": "gpt-4o", "input_per_mtok": 2, "output_per_mtok": 8}
        ]
    )
    assert p.price("openai", "gpt-4o") == Price(2.0, 8.0, 2.0, 2.0, 2.0, source="config")
    usage = read("openai", OPENAI_CHAT_CACHED, "gpt-4o-2024-08-06")
    # No cache price configured: cached tokens cost the input price.
    assert p.cost("openai", "gpt-4o", usage) == approx(2006 * 2.0 / 1e6 + 300 * 8.0 / 1e6)
    # The table still prices the others.
    assert p.price("azure", "gpt-4o") == Price(2.5, 10.0, 1.25, 2.5, 2.5, source="genai-prices")


def test_config_price_for_the_requested_name_beats_the_table_for_the_billed_one() -> None:
    p = pricer(prices=[{"model": "gpt-4o", "input_per_mtok": 1, "output_per_mtok": 1}])
    usage = Usage(prompt_tokens=1000, completion_tokens=1000, model="gpt-4o-2024-08-06")
    assert p.cost("openai", "gpt-4o", usage) == approx(2000 * 1.0 / 1e6)


def test_globs_and_first_match_wins() -> None:
    p = pricer(
        prices=[
            {
                "provider": "vllm",
                "model": "llama-3*",
                "input_per_mtok": 0.2,
                "output_per_mtok": 0.6,
            },
            {"model": "llama-3*", "input_per_mtok": 9, "output_per_mtok": 9},
            {"provider": "v*", "model": "*", "input_per_mtok": 5, "output_per_mtok": 5},
        ]
    )
    assert p.price("vllm", "llama-3.1-8b") == Price(0.2, 0.6, 0.2, 0.2, 0.2, source="config")
    # The provider glob defaults to "*"; globs are case-sensitive.
    assert p.price("groq", "llama-3.1-8b") == Price(9.0, 9.0, 9.0, 9.0, 9.0, source="config")
    assert p.price("vllm", "Llama-3.1-8b") == Price(5.0, 5.0, 5.0, 5.0, 5.0, source="config")
    assert p.price("elsewhere", "Llama-3.1-8b") is None


def test_config_cache_prices_and_their_defaults() -> None:
    p = pricer(
        prices=[
            {
                "model": "full",
                "input_per_mtok": 0.2,
                "output_per_mtok": 0.6,
                "cache_read_per_mtok": 0.05,
                "cache_write_per_mtok": 0.25,
                "cache_write_1h_per_mtok": 0.4,
            },
            {
                "model": "writes",
                "input_per_mtok": 1,
                "output_per_mtok": 2,
                "cache_write_per_mtok": 1.25,
            },
        ]
    )
    usage = read("anthropic", ANTHROPIC_MIXED_TTL)
    expected = (
        2048 * 0.2 / 1e6 + 1800 * 0.05 / 1e6 + 148 * 0.25 / 1e6 + 100 * 0.4 / 1e6 + 503 * 0.6 / 1e6
    )
    assert p.cost("vllm", "full", usage) == approx(expected)
    # Reads default to the input price, 1-hour writes to the write price.
    assert p.price("vllm", "writes") == Price(1.0, 2.0, 1.0, 1.25, 1.25, source="config")
    expected = 2048 * 1 / 1e6 + 1800 * 1 / 1e6 + 248 * 1.25 / 1e6 + 503 * 2 / 1e6
    assert p.cost("vllm", "writes", usage) == approx(expected)


def test_without_the_table_only_config_models_are_priced() -> None:
    p = pricer(
        table=False, prices=[{"model": "llama-3*", "input_per_mtok": 0.2, "output_per_mtok": 0.6}]
    )
    assert p.price("openai", "gpt-4o") is None
    assert p.cost("anthropic", "claude-sonnet-4-5", Usage(prompt_tokens=10)) is None
    assert p.price("vllm", "llama-3-8b") is not None


# --- estimates ---

SPLITS = [
    # (uncached, cache read, 5-minute write, 1-hour write) of a 10,000-token prompt
    (10_000, 0, 0, 0),
    (0, 10_000, 0, 0),
    (0, 0, 10_000, 0),
    (0, 0, 0, 10_000),
    (2_500, 2_500, 2_500, 2_500),
]


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize(
    ("provider", "model", "prompt"),
    [
        ("anthropic", "claude-sonnet-4-5", 10_000),
        ("anthropic", "claude-sonnet-4-5", 400_000),  # past the 200K tier
        ("openai", "gpt-4o", 10_000),
        ("perplexity", "sonar", 10_000),  # a fee per request
        ("vllm", "cached", 10_000),  # a config price whose writes cost more than input
    ],
)
def test_estimate_is_at_least_the_cost_whatever_the_cache_split(
    split: tuple[int, int, int, int], provider: str, model: str, prompt: int
) -> None:
    p = pricer(
        prices=[
            {
                "model": "cached",
                "input_per_mtok": 1,
                "output_per_mtok": 4,
                "cache_read_per_mtok": 0.1,
                "cache_write_per_mtok": 1.25,
                "cache_write_1h_per_mtok": 2,
            }
        ]
    )
    scale = prompt // 10_000
    uncached, read_, write, write_1h = (n * scale for n in split)
    usage = Usage(
        prompt_tokens=uncached + read_ + write + write_1h,
        completion_tokens=1_000,
        cache_read_tokens=read_,
        cache_write_tokens=write,
        cache_write_1h_tokens=write_1h,
    )
    cost, estimate = p.cost(provider, model, usage), p.estimate(provider, model, prompt, 1_000)
    assert cost is not None and estimate is not None
    assert estimate >= cost


def test_estimate_counts_the_prompt_at_the_dearest_input_unit_and_highest_tier() -> None:
    p = pricer()
    # Sonnet 4.5 at its long-context tier: a 1-hour write costs $12, output $22.50.
    assert p.estimate("anthropic", "claude-sonnet-4-5", 1000, 100) == approx(
        1000 * 12.00 / 1e6 + 100 * 22.50 / 1e6
    )
    # gpt-4o has no dearer input unit than its input.
    assert p.estimate("openai", "gpt-4o", 1000, 100) == approx(1000 * 2.50 / 1e6 + 100 * 10.0 / 1e6)


# --- memo, warnings, network ---


def test_lookups_are_remembered_found_or_not(monkeypatch: pytest.MonkeyPatch) -> None:
    p = pricer()
    calls: list[str] = []
    real = genai_prices.calc_price

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(genai_prices, "calc_price", counting)
    usage = Usage(prompt_tokens=10, completion_tokens=5, model="unknown-billed")
    assert p.cost("openai", "unknown-requested", usage) is None
    assert calls == ["unknown-billed", "unknown-requested"]
    assert p.cost("openai", "unknown-requested", usage) is None
    assert p.price("openai", "unknown-requested") is None
    assert calls == ["unknown-billed", "unknown-requested"]
    # A known model: looked up at startup; an answer is priced without calling genai-prices.
    calls.clear()
    assert p.cost("openai", "gpt-4o", Usage(prompt_tokens=10)) is not None
    assert p.cost("anthropic", "claude-sonnet-4-5", Usage(prompt_tokens=300_000)) is not None
    assert p.price("openai", "gpt-4o") is not None
    assert calls == []


def genai_usage(usage: Usage) -> genai_prices.Usage:
    """Our units in genai-prices' keys: both count cache reads and writes inside the input."""
    written = usage.cache_write_tokens + usage.cache_write_1h_tokens
    return genai_prices.Usage(
        input_tokens=max(usage.prompt_tokens, usage.cache_read_tokens + written),
        output_tokens=usage.completion_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=written,
        cache_write_1h_tokens=usage.cache_write_1h_tokens,
    )


def test_every_model_costs_what_genai_prices_computes() -> None:
    """The gateway's sum of tokens times prices is genai-prices' own answer, for every model
    of the table priced by tokens, below, at and above each tier's start, with and without
    cache reads and writes (and a host's cached parts larger than its whole)."""
    shapes = [
        Usage(prompt_tokens=1234, completion_tokens=567),
        Usage(prompt_tokens=2006, completion_tokens=300, cache_read_tokens=1920),
        Usage(1000, 10, cache_read_tokens=200, cache_write_tokens=300, cache_write_1h_tokens=100),
        Usage(prompt_tokens=10, completion_tokens=1, cache_read_tokens=50),
        Usage(prompt_tokens=0, completion_tokens=0),
    ]
    now = datetime.now(UTC)
    checked = tiered = 0
    for provider in get_snapshot().providers:
        for model in provider.models:
            prices = model.get_prices(now)
            terms = _table_terms(prices)
            if terms is None:
                continue
            usages = list(shapes)
            for start, _ in terms.tiers:
                for size in (start - 1, start, start + 1, 2 * start):
                    usages.append(Usage(size, 1000, cache_read_tokens=size // 3))
            for usage in usages:
                expected = float(prices.calc_price(genai_usage(usage))["total_price"])
                assert cost_at(terms, usage) == pytest.approx(expected, rel=1e-9, abs=1e-12), (
                    provider.id,
                    model.id,
                    usage,
                )
            checked += 1
            tiered += bool(terms.tiers)
    assert checked > 300 and tiered > 10


def test_pricing_never_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pricing opened a connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    p = pricer()
    usage = read("anthropic", ANTHROPIC_MIXED_TTL)
    assert p.cost("anthropic", "claude-sonnet-4-5", usage) is not None
    assert p.cost("vllm", "unknown", usage) is None
    # No genai-prices updater is running, and the prices are the bundled ones.
    assert genai_prices.wait_prices_updated_sync(timeout=0) is False
    calc = genai_prices.calc_price(genai_prices.Usage(), "gpt-4o", provider_id="openai")
    assert calc.auto_update_timestamp is None


# --- the config section ---

EXAMPLE = {
    "table": True,
    "prices": [
        {
            "provider": "*",
            "model": "llama-3*",
            "input_per_mtok": 0.2,
            "output_per_mtok": 0.6,
            "cache_read_per_mtok": 0.05,
            "cache_write_per_mtok": 0.25,
            "cache_write_1h_per_mtok": 0.4,
        }
    ],
}


def test_parse_pricing_reads_the_documented_example_and_defaults() -> None:
    cfg = parse_pricing(EXAMPLE)
    assert cfg.table is True
    assert cfg.prices == (PriceOverride("*", "llama-3*", 0.2, 0.6, 0.05, 0.25, 0.4),)
    assert parse_pricing({}).table is True and parse_pricing({}).prices == ()
    minimal = parse_pricing(
        {"prices": [{"model": "free-*", "input_per_mtok": 0, "output_per_mtok": 0}]}
    )
    assert minimal.prices == (PriceOverride("*", "free-*", 0.0, 0.0),)


def entry(**over: Any) -> dict[str, Any]:
    return {
        "pricing": {"prices": [{"model": "m", "input_per_mtok": 1, "output_per_mtok": 2, **over}]}
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            entry(input_per_mtok=-1),
            "pricing.prices[0].input_per_mtok must be a number of at least 0, got -1",
        ),
        (
            entry(output_per_mtok=2_500_000),
            "pricing.prices[0].output_per_mtok must be at most 1000: prices are in USD per million tokens",
        ),
        (
            entry(input_per_mtok=0.0000025),
            "pricing.prices[0].input_per_mtok must be 0 or at least 0.0001: prices are in USD per million tokens, not per token",
        ),
        (
            entry(cache_read_per_mtok="0.5"),
            "pricing.prices[0].cache_read_per_mtok must be a number (USD per million tokens), got '0.5'",
        ),
        (
            entry(cache_write_per_mtok=True),
            "pricing.prices[0].cache_write_per_mtok must be a number (USD per million tokens), got True",
        ),
        (
            entry(cache_write_1h_per_mtok=math.nan),
            "pricing.prices[0].cache_write_1h_per_mtok must be a finite number",
        ),
        (
            entry(output_per_mtok=math.inf),
            "pricing.prices[0].output_per_mtok must be a finite number",
        ),
        (entry(input_per_token=1), "unknown config key 'pricing.prices[0].input_per_token'"),
        (entry(model=None), "pricing.prices[0].model is required"),
        (entry(model="  "), "pricing.prices[0].model must be a non-empty string, got '  '"),
        (entry(provider=""), "pricing.prices[0].provider must be a non-empty string, got ''"),
        (
            {"pricing": {"prices": [{"model": "m", "output_per_mtok": 2}]}},
            "pricing.prices[0].input_per_mtok is required",
        ),
        ({"pricing": {"tabel": True}}, "unknown config key 'pricing.tabel'"),
        ({"pricing": {"table": "yes"}}, "pricing.table must be true or false, got 'yes'"),
        ({"pricing": {"prices": {"model": "m"}}}, "pricing.prices must be a list"),
        ({"pricing": {"prices": ["gpt-4o"]}}, "pricing.prices[0] must be a mapping, got 'gpt-4o'"),
        (
            {
                "pricing": {
                    "prices": [
                        entry()["pricing"]["prices"][0],
                        entry(input_per_mtok=3)["pricing"]["prices"][0],
                    ]
                }
            },
            "pricing.prices[1] repeats provider '*' and model 'm'",
        ),
    ],
)
def test_parse_pricing_refuses_with_the_key_named(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_pricing(data["pricing"])
    assert message in str(err.value)


def test_a_later_entry_refuses_with_its_own_index() -> None:
    good = {"model": "a", "input_per_mtok": 1, "output_per_mtok": 1}
    bad = {"model": "b", "input_per_mtok": 1, "output_per_mtok": 1, "cache_write_1h_per_mtok": -0.5}
    with pytest.raises(ConfigError, match=r"pricing\.prices\[1\]\.cache_write_1h_per_mtok must be"):
        parse_pricing({"prices": [good, bad]})
