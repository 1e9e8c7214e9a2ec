"""Model routing: exact listings, globs, provider prefixes, priorities."""

from __future__ import annotations

import pytest

from proxyapi.config import ProviderConfig
from proxyapi.errors import ModelNotFound
from proxyapi.routing import Router


def p(name: str, models: tuple[str, ...], priority: int = 1) -> ProviderConfig:
    return ProviderConfig(
        name=name, type="openai", base_url="http://h/v1", models=models, priority=priority
    )


ROUTER = Router(
    (
        p("openai", ("gpt-4o-mini", "gpt-4o"), priority=2),
        p("azure", ("gpt-4o-mini",), priority=1),
        p("openrouter", ("openai/gpt-4o", "meta-llama/*"), priority=5),
        p("local", ("*",), priority=9),
    )
)


def names(model: str) -> list[tuple[str, str]]:
    return [(t.provider.name, t.model) for t in ROUTER.resolve(model)]


def test_every_listing_provider_is_a_candidate_lowest_priority_first() -> None:
    assert names("gpt-4o-mini") == [
        ("azure", "gpt-4o-mini"),
        ("openai", "gpt-4o-mini"),
        ("local", "gpt-4o-mini"),
    ]


def test_prefix_forces_one_provider_and_is_stripped() -> None:
    assert names("openai/gpt-4o-mini") == [("openai", "gpt-4o-mini")]
    assert names("local/anything/with/slashes") == [("local", "anything/with/slashes")]


def test_exact_listing_beats_prefix() -> None:
    # OpenRouter's own ids look like "<vendor>/<model>".
    assert names("openai/gpt-4o")[0] == ("openrouter", "openai/gpt-4o")


def test_glob_listing() -> None:
    assert names("meta-llama/llama-3-8b") == [
        ("openrouter", "meta-llama/llama-3-8b"),
        ("local", "meta-llama/llama-3-8b"),
    ]


def test_prefix_for_a_model_the_provider_does_not_list_falls_to_globs_or_404() -> None:
    router = Router((p("openai", ("gpt-4o",)),))
    with pytest.raises(ModelNotFound) as info:
        router.resolve("openai/gpt-5")
    assert info.value.payload()["error"]["code"] == "model_not_found"
    with pytest.raises(ModelNotFound):
        router.resolve("unknown")


def test_equal_priorities_keep_config_order() -> None:
    router = Router((p("b", ("m",)), p("a", ("m",))))
    assert [t.provider.name for t in router.resolve("m")] == ["b", "a"]


def test_listed_models_dedupes_and_skips_globs() -> None:
    listed = [(m, prov.name) for m, prov in ROUTER.listed_models()]
    assert listed == [
        ("gpt-4o-mini", "azure"),
        ("gpt-4o", "openai"),
        ("openai/gpt-4o", "openrouter"),
    ]
    assert [prov.name for prov in ROUTER.globbing_providers()] == ["openrouter", "local"]


def test_metric_label_is_a_configured_name_never_raw_client_input() -> None:
    router = Router(
        (p("openai", ("gpt-4o", "gpt-4o-*")), p("local", ("*",), priority=9)),
        {"fast": (("openai", "gpt-4o"),)},
    )
    assert router.metric_label("gpt-4o") == "gpt-4o"
    assert router.metric_label("fast") == "fast"
    assert router.metric_label("openai/gpt-4o") == "openai/gpt-4o"
    assert router.metric_label("gpt-4o-2024-08-06") == "gpt-4o-*"
    assert router.metric_label("openai/gpt-4o-x") == "openai/gpt-4o-*"
    assert router.metric_label("anything-a-client-types") == "*"
    assert Router((p("openai", ("gpt-4o",)),)).metric_label("nope") == "other"
