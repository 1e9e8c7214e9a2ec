"""Validate the ``pricing`` section into a :class:`~proxyapi.config.model.PricingConfig`.

Prices are in USD per million tokens, the unit providers publish. The classic mistake is a
price per token or per thousand tokens (10^6 or 10^3 times too small), or one scaled the other
way; a price outside what any model costs is refused with the unit in the message, so a budget
is not silently off by a factor of a million.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from proxyapi.config import checks as c
from proxyapi.config.checks import ConfigError
from proxyapi.config.model import PriceOverride, PricingConfig

# The dearest models cost tens of dollars per million tokens (output of the largest ones about
# 100-200); above 1000 the number is in another unit.
MAX_PRICE_PER_MTOK = 1000.0
# The cheapest paid models cost a few cents per million tokens; a positive price below this is
# a price per token or per thousand tokens. 0 stays allowed: a free model.
MIN_PRICE_PER_MTOK = 1e-4

_PRICE_KEYS = (
    "provider",
    "model",
    "input_per_mtok",
    "output_per_mtok",
    "cache_read_per_mtok",
    "cache_write_per_mtok",
    "cache_write_1h_per_mtok",
)
_OPTIONAL_PRICES = ("cache_read_per_mtok", "cache_write_per_mtok", "cache_write_1h_per_mtok")


def parse_pricing(data: Mapping[str, Any]) -> PricingConfig:
    """Validate the ``pricing`` section (empty when absent)."""
    c.only(data, "pricing", ("table", "prices"))
    raw = data.get("prices")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise ConfigError(f"pricing.prices must be a list, got {raw!r}")
    prices = tuple(_parse_price(item, f"pricing.prices[{i}]") for i, item in enumerate(raw))
    # The first match wins, so a second entry with the same globs would never apply.
    seen: set[tuple[str, str]] = set()
    for i, p in enumerate(prices):
        if (p.provider, p.model) in seen:
            raise ConfigError(
                f"pricing.prices[{i}] repeats provider {p.provider!r} and model {p.model!r} of an "
                "earlier entry, which always wins (the first match applies)"
            )
        seen.add((p.provider, p.model))
    return PricingConfig(table=c.get(data, "pricing", "table", c.boolean, True), prices=prices)


def _parse_price(raw: Any, where: str) -> PriceOverride:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {raw!r}")
    c.only(raw, where, _PRICE_KEYS)
    optional = {
        key: c.get(raw, where, key, per_mtok, None) if raw.get(key) is not None else None
        for key in _OPTIONAL_PRICES
    }
    return PriceOverride(
        provider=c.get(raw, where, "provider", c.non_empty_str, "*").strip(),
        model=c.get(raw, where, "model", c.non_empty_str, None).strip(),
        input_per_mtok=c.get(raw, where, "input_per_mtok", per_mtok, None),
        output_per_mtok=c.get(raw, where, "output_per_mtok", per_mtok, None),
        cache_read_per_mtok=optional["cache_read_per_mtok"],
        cache_write_per_mtok=optional["cache_write_per_mtok"],
        cache_write_1h_per_mtok=optional["cache_write_1h_per_mtok"],
    )


def per_mtok(v: Any) -> float:
    """A price in USD per million tokens: finite, 0 or a plausible positive amount."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError("must be a number (USD per million tokens)")
    if not math.isfinite(v):
        raise ValueError("must be a finite number (USD per million tokens)")
    if v < 0:
        raise ValueError("must be a number of at least 0")
    if v > MAX_PRICE_PER_MTOK:
        raise ValueError(
            f"must be at most {MAX_PRICE_PER_MTOK:g}: prices are in USD per million tokens "
            "(GPT-4o's input is 2.5), and no model costs more"
        )
    if 0 < v < MIN_PRICE_PER_MTOK:
        raise ValueError(
            f"must be 0 or at least {MIN_PRICE_PER_MTOK:g}: prices are in USD per million "
            "tokens, not per token or per thousand tokens (GPT-4o's input is 2.5, not "
            "0.0000025)"
        )
    return float(v)
