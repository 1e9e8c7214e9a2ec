"""Everything that talks to providers: pooled connections, retries, breakers, fallback.

This package is the only code that sends anything over the network, and the only code that
sees ``requests``, ``urllib3`` or ``pybreaker`` exceptions (translated in
:mod:`proxyapi.upstream.outcomes`). :class:`Upstream` (:mod:`.calls`) tries a request's
candidate providers in order (DESIGN.md section 4), each behind its own circuit breaker
(:mod:`.breakers`) and with its own retries (:mod:`.retry`), over this process's pooled
connections (:mod:`.clients`).
"""

from __future__ import annotations

from proxyapi.upstream.calls import EXTENSION, Answer, StreamStart, Upstream, init_app

__all__ = ["EXTENSION", "Answer", "StreamStart", "Upstream", "init_app"]
