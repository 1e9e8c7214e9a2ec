"""Model routing: which providers may serve a requested model, in the order to try them.

An alias from the config's ``models:`` section names its targets in order. Otherwise a provider
serves a model when its ``models`` list names it exactly or by a glob (``gpt-4o*``, ``*``),
and candidates are tried lowest ``priority`` first. ``<provider>/<model>`` forces one provider
and strips the prefix. Exact listings win over a prefix (OpenRouter's own ids look like
``openai/gpt-4o``), and a prefix wins over globs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from flask import Flask

from proxyapi.config.values import is_glob, lists_model
from proxyapi.errors import ModelNotFound

if TYPE_CHECKING:
    from proxyapi.config import Config, ProviderConfig

EXTENSION = "proxyapi.router"
__all__ = ["EXTENSION", "Router", "Target", "init_app", "is_glob", "lists_model"]


@dataclass(frozen=True)
class Target:
    """One provider to try, with the model name to send it."""

    provider: ProviderConfig
    model: str


class Router:
    """Resolves model names to candidate providers, lowest ``priority`` first."""

    def __init__(
        self,
        providers: tuple[ProviderConfig, ...],
        aliases: Mapping[str, tuple[tuple[str, str], ...]] | None = None,
    ) -> None:
        # sorted() is stable, so equal priorities keep their order in the config file.
        self.providers = tuple(sorted(providers, key=lambda p: p.priority))
        self._by_name = {p.name: p for p in self.providers}
        self.aliases = {
            alias: [Target(self._by_name[name], model) for name, model in targets]
            for alias, targets in (aliases or {}).items()
        }
        # Names what routing depends on: cached model lists built from another config (the
        # file cache outlives restarts) are not reused.
        material = [
            [[p.name, p.base_url, list(p.models), p.priority] for p in self.providers],
            {a: [[t.provider.name, t.model] for t in ts] for a, ts in self.aliases.items()},
        ]
        self.fingerprint = hashlib.sha256(json.dumps(material).encode()).hexdigest()[:16]
        self._exact = {p.name: frozenset(m for m in p.models if not is_glob(m)) for p in providers}
        self._globs = {p.name: tuple(m for m in p.models if is_glob(m)) for p in providers}

    def serves(self, provider: ProviderConfig, model: str) -> bool:
        """Tell whether ``provider`` lists ``model`` exactly or by a glob."""
        if model in self._exact[provider.name]:
            return True
        return any(fnmatchcase(model, g) for g in self._globs[provider.name])

    def names(self, provider: ProviderConfig, model: str) -> bool:
        """Tell whether ``provider``'s ``models`` list names ``model`` exactly (not by a glob)."""
        return model in self._exact[provider.name]

    def resolve(self, model: str) -> list[Target]:
        """Return the providers to try for ``model``; raise ModelNotFound if none serves it."""
        if model in self.aliases:
            return list(self.aliases[model])
        if any(model in self._exact[p.name] for p in self.providers):
            return [Target(p, model) for p in self.providers if self.serves(p, model)]
        prefix, sep, rest = model.partition("/")
        forced = self._by_name.get(prefix) if sep else None
        if forced is not None and rest and self.serves(forced, rest):
            return [Target(forced, rest)]
        targets = [Target(p, model) for p in self.providers if self.serves(p, model)]
        if not targets:
            raise ModelNotFound(
                f"The model '{model}' does not exist or is not served by this gateway; "
                "GET /v1/models lists the models you can use.",
                param="model",
            )
        return targets

    def metric_label(self, model: str) -> str:
        """Name ``model`` for a metrics label: a configured alias, model or glob, never raw input.

        A glob admits any client string, so a model served by a glob is labelled with the glob
        (``gpt-4o*``) to keep label cardinality bounded by the config.
        """
        if model in self.aliases or any(model in self._exact[p.name] for p in self.providers):
            return model
        prefix, sep, rest = model.partition("/")
        forced = self._by_name.get(prefix) if sep else None
        if forced is not None and rest:
            if rest in self._exact[forced.name]:
                return model
            pattern = self._glob_for(forced, rest)
            if pattern is not None:
                return f"{forced.name}/{pattern}"
        for p in self.providers:
            pattern = self._glob_for(p, model)
            if pattern is not None:
                return pattern
        return "other"

    def _glob_for(self, provider: ProviderConfig, model: str) -> str | None:
        return next((g for g in self._globs[provider.name] if fnmatchcase(model, g)), None)

    def listed_models(self) -> list[tuple[str, ProviderConfig]]:
        """Return every model named exactly in the config, with its first provider."""
        seen: dict[str, ProviderConfig] = {}
        for p in self.providers:
            for m in p.models:
                if not is_glob(m):
                    seen.setdefault(m, p)
        return list(seen.items())

    def globbing_providers(self) -> list[ProviderConfig]:
        """Return the providers whose model list includes globs (their ids come from upstream)."""
        return [p for p in self.providers if self._globs[p.name]]

    def glob_allows(self, provider: ProviderConfig, model: str) -> bool:
        """Tell whether one of ``provider``'s globs admits ``model``."""
        return any(fnmatchcase(model, g) for g in self._globs[provider.name])


def init_app(app: Flask, config: Config) -> None:
    """Build the router for ``config`` and keep it in ``app.extensions``."""
    app.extensions[EXTENSION] = Router(config.providers, config.aliases)
