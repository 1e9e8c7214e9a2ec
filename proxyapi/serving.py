"""gunicorn hooks: the config is checked once in the master and handed to workers by fork.

The master parses the config at start and again on ``SIGHUP``; workers are forked from it and
build their app from that parsed config (:func:`master_config`). A config file broken by an
edit is therefore refused by the master, with one clear log line, and the new workers keep the
last good config: a typo never takes the gateway down.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from proxyapi.config import Config, ConfigError, load_config
from proxyapi.ratelimit import per_process_problem

_config: Config | None = None


def master_config() -> Config | None:
    """The config the gunicorn master checked, or None when not running under its hooks."""
    return _config


class _Refused(ConfigError):
    """A valid config this server cannot honour (per-process limits with several workers)."""


def _check(workers: int) -> Config:
    config = load_config()
    problem = per_process_problem(config, workers)
    if problem:
        raise _Refused(problem)
    return config


def on_starting(server: Any) -> None:
    """Check the config before any worker starts (a typo stops the start with one line)."""
    global _config
    try:
        _config = _check(server.cfg.workers)
    except _Refused as exc:
        server.log.error("proxyapi: refusing to start: %s", exc)
        raise SystemExit(1) from exc
    except ConfigError as exc:
        server.log.error("proxyapi: config error: %s", exc)
        raise SystemExit(1) from exc
    server.log.info("proxyapi: config loaded from %s", _config.source)
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if metrics_dir:
        # Files left by a previous run would be added to this run's counters.
        shutil.rmtree(metrics_dir, ignore_errors=True)
        os.makedirs(metrics_dir, exist_ok=True)


def on_reload(server: Any) -> None:
    """Re-read the config on SIGHUP; the workers started next use it, if it is valid."""
    global _config
    try:
        _config = _check(server.cfg.workers)
    except ConfigError as exc:
        server.log.error(
            "proxyapi: config reload refused, workers keep the previous config: %s", exc
        )
        return
    server.log.info("proxyapi: config reloaded from %s", _config.source)


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges (in-flight requests) from the merged metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    """Remove the metrics files of this run."""
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if metrics_dir:
        shutil.rmtree(metrics_dir, ignore_errors=True)
