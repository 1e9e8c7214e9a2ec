"""What an answer costs, in USD: the config's own prices first, then genai-prices' table.

A model is priced by the first ``pricing.prices`` entry whose provider and model globs match,
else (with ``pricing.table``) by the table bundled with the installed genai-prices, found for
the provider's kind: type ``anthropic`` and ``azure`` by genai-prices' provider of that id,
type ``openai`` on api.openai.com as OpenAI, any other ``openai`` host by its URL (genai-prices
knows OpenRouter, Groq, Together, Mistral, DeepSeek, Fireworks, x.ai, Perplexity, Gemini's
OpenAI endpoint and more that way). A host it does not know, such as a local vLLM, is
unpriced: never OpenAI's prices for somebody else's model, and never 0 for an unknown one.

genai-prices gives the prices; the cost of an answer is computed here, as the sum of each
unit's tokens times its price at the tier the prompt reached (genai-prices' "cliff" tiers: past
a tier's start every token costs the tier's price). genai-prices' own calculation, built for
audio, image and request units too, costs about 120-140 us a call, a sixth of the gateway's
own time per request, for what is a dot product here (about 2 us); the tests check both agree
for every model of the table, below and above each tier.

The table is the one installed with the package: genai-prices can fetch newer prices in a
background thread (``genai_prices.UpdatePrices``), which this module never starts, so pricing
does no network I/O; prices change when the package is upgraded.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from fnmatch import fnmatchcase

import genai_prices
from genai_prices.types import ModelInfo, ModelPrice, PriceCalculation, TieredPrices

from proxyapi.config.model import PriceOverride, PricingConfig, ProviderConfig
from proxyapi.config.values import is_glob, is_openai_api
from proxyapi.providers.usage import Usage

# (provider, model) pairs whose lookups are remembered, found or not. Model names can come
# from clients (a provider that lists a glob) and from providers (the billed name), so the
# memo is bounded; a working set is a few dozen names.
MEMO_SIZE = 4096


@dataclass(frozen=True)
class Price:
    """A model's prices in USD per million tokens of each unit, and where they came from.

    ``source`` is ``"config"`` or ``"genai-prices"``. A price tiered by prompt size (Anthropic's
    long context) shows its first tier here, as price lists do; :meth:`Pricer.cost` applies the
    tier the prompt reached, :meth:`Pricer.estimate` the highest.
    """

    input: float
    output: float
    cache_read: float
    cache_write: float
    cache_write_1h: float
    source: str


class Pricer:
    """Prices answers by provider and model; one per app, safe to share between threads.

    Lookups are remembered per (provider, model), found or not, so a model the table does not
    know costs its search once; an answer then costs a sum of tokens times prices (about
    2 us; see :func:`cost_at`).
    """

    def __init__(self, config: PricingConfig, providers: Sequence[ProviderConfig]) -> None:
        self._table = config.table
        self._overrides = tuple((o, _ConfigRate.of(o)) for o in config.prices)
        self._where = {p.name: _where(p) for p in providers}
        self._from_config = functools.lru_cache(maxsize=MEMO_SIZE)(self._find_config)
        self._from_table = functools.lru_cache(maxsize=MEMO_SIZE)(self._find_table)
        # Loads genai-prices' table now rather than in the first request, and fills the memo.
        for p in providers:
            for model in p.models:
                if not is_glob(model):
                    self._rate(p.name, (model,))

    def price(self, provider: str, model: str) -> Price | None:
        """Return ``model``'s prices at ``provider``; None if it is unpriced."""
        rate = self._rate(provider, (model,))
        terms = rate.current() if rate else None
        return terms.price if terms else None

    def cost(self, provider: str, model: str, usage: Usage) -> float | None:
        """Return what ``usage`` cost in USD; None if the model is unpriced.

        ``model`` is the upstream model the request asked for. The name the provider billed
        (``usage.model``, e.g. ``gpt-4o-2024-08-06`` for ``gpt-4o``) is more exact and is tried
        first; the requested one is tried when the billed one is unpriced. A config price for
        either name beats the table's for either.
        """
        return self.priced(provider, model, usage)[0]

    def priced(self, provider: str, model: str, usage: Usage) -> tuple[float | None, str]:
        """Return :meth:`cost`, and the model name it priced by (the billed name, or the
        requested one when only that has a price; the billed one when neither has)."""
        names = (usage.model, model) if usage.model and usage.model != model else (model,)
        found = self._named_rate(provider, names)
        terms = found[1].current() if found else None
        if found is None or terms is None:
            return None, names[0]
        return cost_at(terms, usage), found[0]

    def estimate(
        self, provider: str, model: str, prompt_tokens: int, completion_tokens: int
    ) -> float | None:
        """Return the most a request may cost in USD, to reserve before it is sent; None if
        the model is unpriced.

        The prompt is counted at the dearest input unit, cache writes included (Anthropic's
        cost 1.25 and 2 times its input price), so no split of the prompt into cached and
        uncached parts costs more; tiered prices count at their highest tier.
        """
        rate = self._rate(provider, (model,))
        terms = rate.current() if rate else None
        if terms is None:
            return None
        most = terms.highest
        dearest_input = max(most.input, most.cache_read, most.cache_write, most.cache_write_1h)
        per_mtok = prompt_tokens * dearest_input + completion_tokens * most.output
        return per_mtok / 1e6 + terms.per_request

    def _rate(self, provider: str, names: Sequence[str]) -> _ConfigRate | _TableRate | None:
        found = self._named_rate(provider, names)
        return found[1] if found else None

    def _named_rate(
        self, provider: str, names: Sequence[str]
    ) -> tuple[str, _ConfigRate | _TableRate] | None:
        for name in names:
            if rate := self._from_config(provider, name):
                return name, rate
        if self._table:
            for name in names:
                if table_rate := self._from_table(provider, name):
                    return name, table_rate
        return None

    def _find_config(self, provider: str, model: str) -> _ConfigRate | None:
        for override, rate in self._overrides:
            if fnmatchcase(provider, override.provider) and fnmatchcase(model, override.model):
                return rate
        return None

    def _find_table(self, provider: str, model: str) -> _TableRate | None:
        where = self._where.get(provider)
        if where is None or not model:
            return None
        try:
            found = where.calc(genai_prices.Usage(), model)
        except LookupError:
            return None
        rate = _TableRate(model, where, found.model)
        return rate if rate.current() is not None else None


@dataclass(frozen=True)
class _Where:
    """Where genai-prices finds a provider's models: by its provider id, or by API URL."""

    provider_id: str | None = None
    api_url: str | None = None

    def calc(self, usage: genai_prices.Usage, model: str) -> PriceCalculation:
        if self.provider_id is not None:
            return genai_prices.calc_price(usage, model, provider_id=self.provider_id)
        return genai_prices.calc_price(usage, model, provider_api_url=self.api_url)


def _where(provider: ProviderConfig) -> _Where:
    if provider.type in ("anthropic", "azure"):
        # genai-prices' Azure falls back to OpenAI's, Anthropic's, DeepSeek's... models.
        return _Where(provider_id=provider.type)
    if is_openai_api(provider.base_url):
        return _Where(provider_id="openai")
    return _Where(api_url=provider.base_url)


@dataclass(frozen=True)
class _Terms:
    """A model's prices now: at the first tier, at the highest, and per request (USD)."""

    price: Price
    highest: Price
    per_request: float = 0.0
    # (start, prices) of each tier, ascending: a prompt of more input tokens than a start
    # pays that tier's prices for every token.
    tiers: tuple[tuple[int, Price], ...] = ()

    def at(self, input_tokens: int) -> Price:
        """The prices a prompt of ``input_tokens`` pays."""
        for start, price in reversed(self.tiers):
            if input_tokens > start:
                return price
        return self.price


@dataclass(frozen=True)
class _ConfigRate:
    """A price from the config."""

    terms: _Terms

    @classmethod
    def of(cls, o: PriceOverride) -> _ConfigRate:
        cache_write = o.input_per_mtok if o.cache_write_per_mtok is None else o.cache_write_per_mtok
        price = Price(
            input=o.input_per_mtok,
            output=o.output_per_mtok,
            cache_read=o.input_per_mtok if o.cache_read_per_mtok is None else o.cache_read_per_mtok,
            cache_write=cache_write,
            cache_write_1h=(
                cache_write if o.cache_write_1h_per_mtok is None else o.cache_write_1h_per_mtok
            ),
            source="config",
        )
        return cls(_Terms(price, price))

    def current(self) -> _Terms:
        return self.terms


class _TableRate:
    """A model of genai-prices' table; its prices may change on a date the table names."""

    def __init__(self, model: str, where: _Where, info: ModelInfo) -> None:
        self.model = model
        self.where = where
        self.info = info
        self._seen: tuple[ModelPrice, _Terms | None] | None = None

    def current(self) -> _Terms | None:
        """The prices in force now and the fee per request; None if not priced by tokens."""
        prices = self.info.get_prices(datetime.now(UTC))
        seen = self._seen
        if seen is None or seen[0] is not prices:
            seen = self._seen = (prices, _table_terms(prices))
        return seen[1]


def _table_terms(prices: ModelPrice) -> _Terms | None:
    first, highest = _price(prices, _first_tier), _price(prices, _highest_tier)
    if first is None or highest is None:
        return None
    # Perplexity's models also cost a fee per thousand requests, which calc_price adds.
    per_thousand = _first_tier(prices.requests_kcount)
    starts = sorted(
        {
            tier.start
            for value in (
                prices.input_mtok,
                prices.output_mtok,
                prices.cache_read_mtok,
                prices.cache_write_mtok,
                prices.cache_write_1h_mtok,
            )
            if isinstance(value, TieredPrices)
            for tier in value.tiers
        }
    )
    tiers = []
    for start in starts:
        price = _price(prices, functools.partial(_tier_above, start))
        assert price is not None  # priced by tokens at its first tier, so at every tier
        tiers.append((start, price))
    return _Terms(first, highest, (per_thousand or 0.0) / 1000, tuple(tiers))


def _price(
    prices: ModelPrice, tier: Callable[[Decimal | TieredPrices | None], float | None]
) -> Price | None:
    input_ = tier(prices.input_mtok)
    if input_ is None:
        # Priced by audio hours, characters or pages, or not at all (OpenRouter's ":free"
        # models): the gateway counts tokens, and 0 would read as a known price.
        return None
    output = tier(prices.output_mtok)
    cache_read = tier(prices.cache_read_mtok)
    cache_write = tier(prices.cache_write_mtok)
    cache_write = input_ if cache_write is None else cache_write
    cache_write_1h = tier(prices.cache_write_1h_mtok)
    return Price(
        input=input_,
        # Embedding models have no output price: they answer no output tokens.
        output=0.0 if output is None else output,
        # An unpriced cache unit costs what its parent does, as in genai-prices' calculation.
        cache_read=input_ if cache_read is None else cache_read,
        cache_write=cache_write,
        cache_write_1h=cache_write if cache_write_1h is None else cache_write_1h,
        source="genai-prices",
    )


def _first_tier(value: Decimal | TieredPrices | None) -> float | None:
    if isinstance(value, TieredPrices):
        return float(value.base)
    return None if value is None else float(value)


def _tier_above(start: int, value: Decimal | TieredPrices | None) -> float | None:
    """The price a prompt of more than ``start`` input tokens pays."""
    if isinstance(value, TieredPrices):
        found = value.base
        for tier in value.tiers:
            if start >= tier.start:
                found = tier.price
        return float(found)
    return None if value is None else float(value)


def _highest_tier(value: Decimal | TieredPrices | None) -> float | None:
    if isinstance(value, TieredPrices):
        return float(max(value.base, *(tier.price for tier in value.tiers)))
    return None if value is None else float(value)


def cost_at(terms: _Terms, usage: Usage) -> float:
    """What ``usage`` costs in USD: each unit's tokens times its price at the prompt's tier.

    Cache reads and writes are inside ``prompt_tokens``; the rest of the prompt is uncached
    input. A careless host may report cached parts larger than the whole: the whole is then
    at least its parts (as genai-prices counts it). Reasoning is inside the output.
    """
    written = usage.cache_write_tokens + usage.cache_write_1h_tokens
    prompt = max(usage.prompt_tokens, usage.cache_read_tokens + written)
    uncached = prompt - usage.cache_read_tokens - written
    price = terms.at(prompt)
    per_mtok = (
        uncached * price.input
        + usage.cache_read_tokens * price.cache_read
        + usage.cache_write_tokens * price.cache_write
        + usage.cache_write_1h_tokens * price.cache_write_1h
        + usage.completion_tokens * price.output
    )
    return per_mtok / 1e6 + terms.per_request
