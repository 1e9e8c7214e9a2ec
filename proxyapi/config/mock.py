"""Validate a ``type: mock`` provider's ``mock`` section into a
:class:`~proxyapi.config.model.MockConfig`."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from proxyapi.config import checks as c
from proxyapi.config.checks import ConfigError
from proxyapi.config.model import (
    DEFAULT_MOCK_EMBEDDING_DIMENSIONS,
    MockConfig,
    MockFailure,
    PriceOverride,
    PricingConfig,
    ProviderConfig,
)

# A stall or latency longer than this is a typo (milliseconds given as seconds): a request
# would hold a worker thread for over ten minutes.
MAX_MOCK_SECONDS = 600.0
# OpenAI's largest embedding model has 3072 dimensions.
MAX_EMBEDDING_DIMENSIONS = 4096
_FAULTS = ("status", "stall", "cut_after", "reset")
T = TypeVar("T")


def seconds(v: Any) -> float:
    """A number of seconds from 0 to :data:`MAX_MOCK_SECONDS`."""
    value = c.non_negative_number(v)
    if not value <= MAX_MOCK_SECONDS:
        raise ValueError(f"must be at most {MAX_MOCK_SECONDS:g} seconds")
    return value


def error_status(v: Any) -> int:
    """An HTTP status a provider answers a call with when it fails it (400 to 599)."""
    if isinstance(v, bool) or not isinstance(v, int) or not 400 <= v <= 599:
        raise ValueError("must be an HTTP error status from 400 to 599")
    return v


def parse_mock(data: Mapping[str, Any], where: str) -> MockConfig:
    """Check a mock provider's settings; an error names the key and shows the bad value."""
    c.only(data, where, ("latency", "tokens_per_second", "embedding_dimensions", "failures"))
    dims = c.get(
        data,
        where,
        "embedding_dimensions",
        c.positive_int,
        DEFAULT_MOCK_EMBEDDING_DIMENSIONS,
    )
    if dims > MAX_EMBEDDING_DIMENSIONS:
        raise ConfigError(
            f"{where}.embedding_dimensions must be at most {MAX_EMBEDDING_DIMENSIONS}, got {dims!r}"
        )
    rate = c.get(data, where, "tokens_per_second", c.non_negative_number, 0.0)
    if not math.isfinite(rate):
        raise ConfigError(f"{where}.tokens_per_second must be a finite number, got {rate!r}")
    raw = data.get("failures") or []
    if not isinstance(raw, list):
        raise ConfigError(f"{where}.failures must be a list, got {raw!r}")
    return MockConfig(
        latency=c.get(data, where, "latency", seconds, 0.0),
        tokens_per_second=rate,
        embedding_dimensions=dims,
        failures=tuple(_failure(item, f"{where}.failures[{i}]") for i, item in enumerate(raw)),
    )


def _failure(raw: Any, where: str) -> MockFailure:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {raw!r}")
    c.only(raw, where, ("rate", *_FAULTS, "retry_after", "after"))
    faults = [k for k in _FAULTS if raw.get(k) not in (None, False)]
    if len(faults) != 1:
        raise ConfigError(
            f"{where} must name exactly one of {', '.join(_FAULTS)}, got {dict(raw)!r}"
        )
    status = _optional(raw, where, "status", error_status)
    retry_after = _optional(raw, where, "retry_after", seconds)
    if retry_after is not None and status is None:
        raise ConfigError(f"{where}.retry_after applies to a status failure only")
    stall = _optional(raw, where, "stall", seconds)
    if raw.get("after") is not None and stall is None:
        raise ConfigError(f"{where}.after applies to a stall only")
    return MockFailure(
        rate=c.get(raw, where, "rate", c.fraction, None),
        status=status,
        retry_after=retry_after,
        stall=stall,
        after=c.get(raw, where, "after", c.non_negative_int, 0),
        cut_after=_optional(raw, where, "cut_after", c.non_negative_int),
        reset=c.get(raw, where, "reset", c.boolean, False),
    )


def _optional(data: Mapping[str, Any], where: str, key: str, check: Callable[[Any], T]) -> T | None:
    """``data[key]`` checked, or None when it is absent."""
    if data.get(key) is None:
        return None
    return c.get(data, where, key, check, None)


def free_mocks(pricing: PricingConfig, providers: tuple[ProviderConfig, ...]) -> PricingConfig:
    """``pricing`` with a price of 0 for every mock provider's models, after the config's own
    (the first match wins, so a price given for a mock, to try budgets, comes first): a mock
    costs nothing, and an answer it made is priced at 0, not shown as unpriced."""
    free = tuple(
        PriceOverride(provider=p.name, model="*", input_per_mtok=0.0, output_per_mtok=0.0)
        for p in providers
        if p.type == "mock"
    )
    return PricingConfig(table=pricing.table, prices=pricing.prices + free) if free else pricing
