"""The calls to providers: the fallback loop over a request's candidates, each behind its
breaker and with its retries, inside the request's deadline (DESIGN.md section 4)."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import redis
import requests
from flask import Flask

from proxyapi.deadline import Deadline
from proxyapi.errors import (
    DeadlineExceeded,
    InvalidRequest,
    ProxyAPIError,
    ServiceUnavailable,
    UpstreamMalformed,
    UpstreamRejected,
    secret_forms,
)
from proxyapi.providers import adapter_for, serving
from proxyapi.providers.base import Adapter, Operation, UpstreamReply, UpstreamRequest, Usage
from proxyapi.streaming import ErrorEvent, Relay, TranslatedStream, sse_error_event
from proxyapi.upstream.breakers import Breakers, CircuitBreakerError
from proxyapi.upstream.clients import ProcessClients
from proxyapi.upstream.outcomes import ProviderFailure, Verdict, judge, translated
from proxyapi.upstream.retry import (
    CallState,
    DeadlineTimeout,
    call_state,
    retry_after_seconds,
)
from proxyapi.upstream.stats import ProviderStats, summarize

if TYPE_CHECKING:
    from proxyapi.config import Config, ProviderConfig
    from proxyapi.fleet import Fleet
    from proxyapi.routing import Target

__all__ = ["EXTENSION", "Answer", "StreamStart", "Upstream", "init_app"]

EXTENSION = "proxyapi.upstream"
log = logging.getLogger(__name__)

# Largest error body read from a provider; error bodies are small, anything bigger is noise.
MAX_ERROR_BODY = 64 * 1024
# Read size for answers; read1() for streams returns whatever has arrived, up to this much.
READ_SIZE = 64 * 1024

T = TypeVar("T")

if TYPE_CHECKING:
    # One call to one target: its verdict, its result, or the error to answer with.
    Attempt = Callable[[Target, UpstreamRequest], tuple[Verdict, T | None, ProxyAPIError | None]]


@dataclass(frozen=True)
class Answer:
    """A complete OpenAI-shaped answer, who gave it, how many upstream attempts it took, and
    the tokens it used (if the provider said)."""

    provider: str
    body: bytes
    attempts: int
    usage: Usage | None = None
    upstream_seconds: float = 0.0


@dataclass(frozen=True)
class StreamStart:
    """A stream whose first event has arrived; ``relay.events()`` is the response body."""

    provider: str
    relay: Relay
    attempts: int
    # Time in upstream calls until the first event (retries and fallbacks included).
    upstream_seconds: float = 0.0


class Observer(Protocol):
    """What the fallback loop reports (the metrics implement it)."""

    def upstream_outcome(self, provider: str, outcome: str, seconds: float, retries: int) -> None:
        """One provider considered: ok, failure, fallback, client_error, breaker_open, skipped."""

    def fell_back(self, provider: str) -> None:
        """A request moved on from ``provider``."""

    def first_event(self, provider: str, seconds: float) -> None:
        """A stream's first event arrived ``seconds`` after the request was sent."""

    def breaker(self, provider: str, state: str) -> None:
        """A provider's circuit changed state."""

    def rejected(self, scope: str) -> None:
        """A request was refused with 429 by a gateway limit (``provider``: every cap)."""


class _NoObserver:
    def upstream_outcome(self, provider: str, outcome: str, seconds: float, retries: int) -> None:
        pass

    def fell_back(self, provider: str) -> None:
        pass

    def first_event(self, provider: str, seconds: float) -> None:
        pass

    def breaker(self, provider: str, state: str) -> None:
        pass

    def rejected(self, scope: str) -> None:
        pass


NO_OBSERVER = _NoObserver()


class AttemptTracer(Protocol):
    """What wraps each call to a provider in a span (proxyapi.tracing, only when it is on)."""

    def traced(self, attempt: Attempt[T]) -> Attempt[T]:
        """Return ``attempt`` traced: a span per call, its context sent along."""


_OUTCOME = {
    Verdict.OK: "ok",
    Verdict.FALLBACK: "declined",  # 404, 429: not its fault, the next provider is tried
    Verdict.RELAY: "client_error",
    Verdict.FAILURE: "failure",
}


@dataclass
class _Tally:
    """What the fallback loop learnt from the targets that did not answer."""

    failure: ProxyAPIError | None = None  # the last provider failure or decline
    refusal: InvalidRequest | None = None  # the first provider unable to honour the request
    open_waits: list[float] = field(default_factory=list)  # seconds until half-open
    cooling: list[float] = field(default_factory=list)  # seconds until a skipped one is free
    failed: list[str] = field(default_factory=list)
    tried: list[str] = field(default_factory=list)


class Upstream:
    """Sends OpenAI operations to providers and returns OpenAI-shaped answers."""

    def __init__(
        self,
        config: Config,
        client: redis.Redis | None = None,
        fleet: Fleet | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.config = config
        self.providers = {p.name: p for p in config.providers}
        self.secrets = secret_forms(config.secrets())
        self.adapters: dict[str, Adapter] = {p.name: adapter_for(p) for p in config.providers}
        self.stats = {p.name: ProviderStats() for p in config.providers}
        self.breakers = Breakers(
            config.providers,
            client,
            on_state=(observer or NO_OBSERVER).breaker,
            namespace=config.redis.namespace,
        )
        self.fleet = fleet
        if fleet is not None:
            fleet.register("providers", self._local_figures)
        self._lock = threading.Lock()
        self._clients: ProcessClients | None = None
        # provider -> monotonic time until which it asked (429 + Retry-After) not to be called
        self._cooldowns: dict[str, float] = {}
        self.provider_gate: Callable[[str], float | None] | None = None
        self.observer: Observer = observer or NO_OBSERVER
        # None unless tracing is on; an untraced gateway pays one check per request for it.
        self.tracer: AttemptTracer | None = None

    # ----------------------------------------------------------------- connections

    def clients(self) -> ProcessClients:
        """Return this process's pooled connections, creating them after a fork."""
        clients = self._clients
        if clients is None or clients.pid != os.getpid():
            with self._lock:
                clients = self._clients
                if clients is None or clients.pid != os.getpid():
                    rates = {name: s.failure_rate for name, s in self.stats.items()}
                    clients = self._clients = ProcessClients(self.providers, rates)
                    if self.fleet is not None:
                        self.fleet.start()
        return clients

    def _send(
        self, provider: ProviderConfig, call: UpstreamRequest, deadline: Deadline
    ) -> requests.Response:
        timeout = DeadlineTimeout(provider.timeout.connect, provider.timeout.read, deadline)
        return self.clients().send(provider.name, call, timeout)

    def _fetch(
        self, provider: ProviderConfig, call: UpstreamRequest, deadline: Deadline
    ) -> UpstreamReply:
        """Send ``call`` and read the whole answer (not a stream)."""
        with translated(provider):
            resp = self._send(provider, call, deadline)
            try:
                return UpstreamReply(
                    resp.status_code, resp.headers, _read_all(resp, deadline, provider)
                )
            finally:
                resp.close()

    # ----------------------------------------------------------------- the fallback loop

    def _fallback(
        self,
        targets: list[Target],
        deadline: Deadline,
        prepare: Callable[[Target], UpstreamRequest],
        attempt: Callable[
            [Target, UpstreamRequest], tuple[Verdict, T | None, ProxyAPIError | None]
        ],
    ) -> tuple[str, T, int, float]:
        """Try ``targets`` in order; return the first answer's provider, result, the attempts
        made and the seconds spent in upstream calls.

        ``prepare`` builds a target's call; an InvalidRequest from it (a provider that cannot
        honour the request) moves on to the next target without calling anybody.
        """
        if self.tracer is not None:
            attempt = self.tracer.traced(attempt)
        with call_state(deadline) as state:
            tally = _Tally()
            for target in targets:
                if deadline.expired():
                    break
                name = target.provider.name
                wait = self._skip_for(name)
                if wait is not None:
                    tally.cooling.append(wait)
                    self.observer.upstream_outcome(name, "skipped", 0.0, 0)
                    continue
                try:
                    call = prepare(target)
                except InvalidRequest as exc:
                    tally.refusal = tally.refusal or exc
                    continue
                outcome = self._try(target, call, attempt, state, tally)
                if outcome is not None:
                    for earlier in tally.failed:
                        self.stats[earlier].fell_back(self.stats[name])
                    return name, outcome, state.attempts, state.upstream_seconds
            raise self._final_error(tally, deadline)

    def _skip_for(self, name: str) -> float | None:
        """Seconds a provider is to be left alone (its 429, or the gateway's cap), or None."""
        left = self._cooldowns.get(name, 0.0) - time.monotonic()
        if left <= 0 and self.provider_gate is not None:
            left = self.provider_gate(name) or 0.0
            if left > 0:
                log.info("provider %s skipped: at the gateway's cap for it", name)
        return left if left > 0 else None

    def _try(
        self,
        target: Target,
        call: UpstreamRequest,
        attempt: Callable[
            [Target, UpstreamRequest], tuple[Verdict, T | None, ProxyAPIError | None]
        ],
        state: CallState,
        tally: _Tally,
    ) -> T | None:
        """Call one target behind its breaker; return its answer, or None after noting why not.

        A client error (:attr:`Verdict.RELAY`) is raised: nobody else is tried.
        """
        name = target.provider.name
        stats, observe = self.stats[name], self.observer
        started, retries_before = time.monotonic(), state.retries
        try:
            with self.breakers.get(name).calling():
                state.attempts += 1
                tally.tried.append(name)
                verdict, result, error = attempt(target, call)
        except CircuitBreakerError:
            wait = self.breakers.seconds_until_half_open(name)
            tally.open_waits.append(wait if wait is not None else 0.0)
            log.info("provider %s skipped: its circuit is open", name)
            observe.upstream_outcome(name, "breaker_open", 0.0, 0)
            return None
        except ProviderFailure as failure:
            took, retried = time.monotonic() - started, state.retries - retries_before
            state.upstream_seconds += took
            stats.record(False, took, retried)
            observe.upstream_outcome(name, "failure", took, retried)
            observe.fell_back(name)
            tally.failure = failure.error
            tally.failed.append(name)
            return None
        took, retried = time.monotonic() - started, state.retries - retries_before
        state.upstream_seconds += took
        stats.record(True, took, retried)
        observe.upstream_outcome(name, _OUTCOME[verdict], took, retried)
        if verdict is Verdict.OK:
            assert result is not None
            return result
        assert error is not None
        if verdict is Verdict.RELAY:
            raise error
        # FALLBACK: not this provider's fault (429, model unknown there); another may serve it.
        tally.failure = error
        observe.fell_back(name)
        tally.failed.append(name)
        self._cool_down(name, error)
        return None

    def _final_error(self, tally: _Tally, deadline: Deadline) -> ProxyAPIError:
        """The error for a request nobody answered, most telling first.

        A provider that failed or declined beats a provider that could not honour a parameter:
        the client's request was fine for the first one, so a 400 would blame it wrongly (and
        SDKs do not retry a 400). The refusal is the answer only when nothing else happened.
        """
        if deadline.expired():
            return DeadlineExceeded(
                f"No provider answered within the request's deadline of "
                f"{deadline.timeout:g}s (tried: {', '.join(tally.tried) or 'none'})."
            )
        if tally.failure is not None:
            return tally.failure
        if tally.cooling:
            self.observer.rejected("provider")
            retry_after = max(1, math.ceil(min(tally.cooling + tally.open_waits)))
            return UpstreamRejected(
                429,
                "Every provider for this model is rate limited (by the provider, or by the "
                f"gateway's cap on it); retry in {retry_after}s.",
                type="rate_limit_error",
                error_code="upstream_rate_limited",
                headers={"Retry-After": str(retry_after)},
            )
        if tally.open_waits:
            retry_after = max(1, math.ceil(min(tally.open_waits)))
            return ServiceUnavailable(
                "Every provider for this model is failing and has been taken out of rotation "
                f"(circuit open); retry in {retry_after}s.",
                headers={"Retry-After": str(retry_after)},
            )
        if tally.refusal is not None:
            return tally.refusal
        return ServiceUnavailable("No provider can take the request right now.")

    def _cool_down(self, name: str, error: ProxyAPIError) -> None:
        """Skip a provider that answered 429 for as long as its Retry-After asks."""
        if error.code != 429:
            return
        wait = retry_after_seconds(error.extra_headers)
        if wait:
            self._cooldowns[name] = time.monotonic() + wait
            log.info("provider %s is rate limited: skipped for %.3gs", name, wait)

    # ----------------------------------------------------------------- operations

    def _adapter(self, target: Target, op: Operation) -> Adapter:
        return serving(self.adapters[target.provider.name], op)

    def complete(
        self,
        targets: list[Target],
        op: Operation,
        body: Mapping[str, Any],
        deadline: Deadline,
    ) -> Answer:
        """Return the first complete answer from ``targets``, tried in order."""

        def prepare(target: Target) -> UpstreamRequest:
            return self._adapter(target, op).build(op, body, target.model, stream=False)

        def attempt(
            target: Target, call: UpstreamRequest
        ) -> tuple[Verdict, tuple[bytes, Usage | None] | None, ProxyAPIError | None]:
            provider = target.provider
            adapter = self._adapter(target, op)
            try:
                reply = self._fetch(provider, call, deadline)
            except ProxyAPIError as exc:
                raise ProviderFailure(exc) from exc
            verdict, error = judge(adapter, reply)
            if verdict is Verdict.FAILURE:
                assert error is not None
                raise ProviderFailure(error)
            if verdict is not Verdict.OK:
                return verdict, None, error
            try:
                return Verdict.OK, adapter.parse(op, reply, body), None
            except UpstreamMalformed as exc:
                log.warning("provider %s: %s", provider.name, exc.description)
                raise ProviderFailure(exc) from exc

        name, (answer, usage), attempts, spent = self._fallback(targets, deadline, prepare, attempt)
        return Answer(name, answer, attempts, usage, spent)

    def open_stream(
        self,
        targets: list[Target],
        op: Operation,
        body: Mapping[str, Any],
        deadline: Deadline,
        strip_usage: bool = False,
        error_event: ErrorEvent = sse_error_event,
    ) -> StreamStart:
        """Start a stream with the first target that sends a first event, tried in order.

        ``strip_usage``: keep the usage-only chunk from the client (the gateway asked for it);
        ``error_event`` frames a mid-stream error in the client's dialect.
        """
        server = self.config.server

        def prepare(target: Target) -> UpstreamRequest:
            return self._adapter(target, op).build(op, body, target.model, stream=True)

        def attempt(
            target: Target, call: UpstreamRequest
        ) -> tuple[Verdict, Relay | None, ProxyAPIError | None]:
            provider = target.provider
            adapter = self._adapter(target, op)
            try:
                with translated(provider):
                    resp = self._send(provider, call, deadline)
                    if not 200 <= resp.status_code < 300:
                        try:
                            raw = resp.raw.read(MAX_ERROR_BODY, decode_content=True) or b""
                        finally:
                            resp.close()
            except ProxyAPIError as exc:
                raise ProviderFailure(exc) from exc
            if not 200 <= resp.status_code < 300:
                verdict, error = judge(adapter, UpstreamReply(resp.status_code, resp.headers, raw))
                if verdict is Verdict.FAILURE:
                    assert error is not None
                    raise ProviderFailure(error)
                return verdict, None, error
            content_type = resp.headers.get("Content-Type", "")
            if "text/event-stream" not in content_type:
                resp.close()
                error = UpstreamMalformed(
                    f"Provider '{provider.name}' answered a streaming request with "
                    f"{content_type or 'no content type'} instead of an event stream."
                )
                log.warning("provider %s: %s", provider.name, error.description)
                raise ProviderFailure(error)
            relay = Relay(
                TranslatedStream(
                    provider.name,
                    self._chunks(provider, resp),
                    adapter.stream_translator(op, body, strip_usage),
                    lambda: _abort(resp),
                ),
                server.heartbeat_interval,
                self.secrets,
                error_event,
            )
            try:
                relay.wait_first(min(server.first_token_timeout, max(deadline.remaining(), 0)))
            except ProxyAPIError as exc:
                raise ProviderFailure(exc) from exc
            # The first event is here: from now on only the provider's read timeout applies.
            connection = resp.raw.connection
            if connection is not None and connection.sock is not None:
                with suppress(OSError):
                    connection.sock.settimeout(provider.timeout.read)
            return Verdict.OK, relay, None

        name, relay, attempts, spent = self._fallback(targets, deadline, prepare, attempt)
        relay.on_finish = lambda error: self._stream_finished(name, error)
        self.observer.first_event(name, spent)
        return StreamStart(name, relay, attempts, spent)

    @staticmethod
    def _chunks(provider: ProviderConfig, resp: requests.Response) -> Iterator[bytes]:
        """The raw bytes of a streamed answer, as they arrive (errors translated)."""
        try:
            with translated(provider):
                while True:
                    data = resp.raw.read1(READ_SIZE, decode_content=True)
                    if not data:
                        break
                    yield data
        finally:
            resp.close()

    def _stream_finished(self, name: str, error: ProxyAPIError | None) -> None:
        """Count a stream that failed after its first event against its provider."""
        if error is None:
            return
        self.stats[name].record_failure_after_start()
        with suppress(CircuitBreakerError, ProviderFailure), self.breakers.get(name).calling():
            raise ProviderFailure(error)

    def can_list_models(self, provider: ProviderConfig) -> bool:
        """Tell whether a provider has a call that lists its models."""
        return self.adapters[provider.name].build_list_models() is not None

    def list_models(self, provider: ProviderConfig) -> list[str]:
        """Ask a provider which models it has (no breaker: this is not client traffic)."""
        adapter = self.adapters[provider.name]
        call = adapter.build_list_models()
        if call is None:
            return []
        deadline = Deadline.after(provider.timeout.connect + provider.timeout.read)
        with call_state(deadline):
            reply = self._fetch(provider, call, deadline)
        _verdict, error = judge(adapter, reply)
        if error is not None:
            raise error
        return adapter.parse_list_models(reply)

    # ----------------------------------------------------------------- reporting

    def report_breakers(self) -> None:
        """Tell the observer every breaker's current state (shared ones as Redis has it)."""
        for name in self.providers:
            self.observer.breaker(name, self.breakers.get(name).current_state)

    def _local_figures(self) -> dict[str, Any]:
        clients = self.clients()
        return {
            name: {**stats.raw(), "pool": clients.pool_counts(name)}
            for name, stats in self.stats.items()
        }

    def describe(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Return (scope, per-provider breaker, counters and pool use) for /v1/providers.

        In distributed mode the counters of every live worker on every host are merged;
        otherwise they are this worker's.
        """
        local = self._local_figures()
        workers = None
        if self.fleet is not None:
            self.fleet.publish()
            workers = self.fleet.collect("providers")
        scope = {
            "counters": "all workers" if workers else "this worker",
            "workers_reporting": len(workers) if workers else 1,
            "breakers": "shared" if self.breakers.shared else "this worker",
        }
        figures = workers or [local]
        out = []
        for name, provider in sorted(self.providers.items(), key=lambda kv: kv[1].priority):
            mine = [f[name] for f in figures if name in f]
            pools = [m["pool"] for m in mine]
            out.append(
                {
                    "name": name,
                    "type": provider.type,
                    "priority": provider.priority,
                    "breaker": self.breakers.describe(name),
                    **summarize(mine),
                    "pool": {k: sum(p[k] for p in pools) for k in pools[0]} if pools else {},
                }
            )
        return scope, out


def _abort(resp: requests.Response) -> None:
    """Interrupt a streamed read from another thread (the client has gone)."""
    # ValueError/RuntimeError: already finished or released, nothing to interrupt.
    with suppress(ValueError, RuntimeError, OSError):
        resp.raw.shutdown()


def _read_all(resp: requests.Response, deadline: Deadline, provider: ProviderConfig) -> bytes:
    """Read a whole answer, giving up when the deadline passes (per-read timeouts alone would
    let a slowly dripping answer run on)."""
    parts = []
    for chunk in resp.iter_content(READ_SIZE):
        parts.append(chunk)
        if deadline.expired():
            raise DeadlineExceeded(
                f"Provider '{provider.name}' was still sending its answer when the request's "
                f"deadline of {deadline.timeout:g}s passed."
            )
    return b"".join(parts)


def init_app(
    app: Flask,
    config: Config,
    client: redis.Redis | None = None,
    fleet: Fleet | None = None,
    provider_gate: Callable[[str], float | None] | None = None,
    observer: Observer | None = None,
) -> Upstream:
    """Keep the app's :class:`Upstream` in ``app.extensions``.

    ``provider_gate(name)`` is asked before each call to a provider: None lets it through, a
    number of seconds skips the provider (it is at the gateway's own cap for it).
    """
    up = Upstream(config, client, fleet, observer)
    if any(p.rate_limit for p in config.providers):
        up.provider_gate = provider_gate
    app.extensions[EXTENSION] = up
    return up
