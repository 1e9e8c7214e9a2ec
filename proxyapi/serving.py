"""gunicorn hooks: the config is checked once in the master and handed to workers by fork.

The master parses the config at start and again on ``SIGHUP``; workers are forked from it and
build their app from that parsed config (:func:`master_config`). A config file broken by an
edit is therefore refused by the master, with one clear log line, and the new workers keep the
last good config: a typo never takes the gateway down.
"""

from __future__ import annotations

import glob
import os
import shutil
from typing import Any

from proxyapi import tracing
from proxyapi.config import Config, ConfigError, load_config
from proxyapi.private_dir import ensure_private_dir
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
    tracing.check(config)  # the extra missing: one line here, not a traceback per worker
    if config.cache_backend == "filesystem":
        from proxyapi.cache import prepare_file_cache

        prepare_file_cache(config)  # refused here, in one line, rather than in every worker
    return config


def _metrics_dir() -> tuple[str | None, bool]:
    """The Prometheus multiprocess folder, and whether gunicorn.conf.py created it (ours)."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
    ours = folder is not None and os.environ.get("PROXYAPI_METRICS_DIR_CREATED") == folder
    return folder, ours


def _clear_metrics(folder: str) -> None:
    # Only prometheus-client's own files: the folder may be the operator's, not ours.
    for path in glob.glob(os.path.join(folder, "*.db")):
        os.remove(path)


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
    metrics_dir, _ours = _metrics_dir()
    if metrics_dir:
        try:
            ensure_private_dir(metrics_dir, "PROMETHEUS_MULTIPROC_DIR")
        except ConfigError as exc:
            server.log.error("proxyapi: refusing to start: %s", exc)
            raise SystemExit(1) from exc
        # Files left by a previous run would be added to this run's counters.
        _clear_metrics(metrics_dir)


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
    """Remove the metrics files of this run (and the folder, when it was created for it)."""
    metrics_dir, ours = _metrics_dir()
    if metrics_dir and ours:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    elif metrics_dir and os.path.isdir(metrics_dir):
        _clear_metrics(metrics_dir)
