"""The mock provider's answers (``type: mock``): made up from the request, no network.

:func:`~proxyapi.mock.answers.plan` is the whole interface; the transport that delivers a plan
is :mod:`proxyapi.upstream.mock_transport`.
"""

from __future__ import annotations

from proxyapi.mock.answers import Plan, plan

__all__ = ["Plan", "plan"]
