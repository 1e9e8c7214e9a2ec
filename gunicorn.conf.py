"""gunicorn settings for ProxyAPI: ``gunicorn -c gunicorn.conf.py wsgi:app``.

Everything comes from the environment, Heroku-style: PORT, WEB_CONCURRENCY, REDIS_URL,
GUNICORN_THREADS, GUNICORN_WORKER_CONNECTIONS, GUNICORN_MAX_REQUESTS. This file is re-read on
every SIGHUP, so it does nothing but assign settings (the hooks run when gunicorn calls them).
"""

import os
import tempfile

# prometheus-client picks its multiprocess mode once, when first imported: the directory must be
# named before anything imports it. Workers inherit it; on SIGHUP (the variable is set by then)
# this keeps the same one. A new folder with an unpredictable name (mkdtemp: mode 0700, ours),
# so nobody can prepare it in the shared temp dir; the hooks empty and remove only this one.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="proxyapi-metrics-")
    os.environ["PROXYAPI_METRICS_DIR_CREATED"] = os.environ["PROMETHEUS_MULTIPROC_DIR"]

# Bind on every interface when the platform gives a PORT (Heroku-style), else on loopback.
# GUNICORN_BIND overrides both (e.g. "127.0.0.1:8080" or "unix:/run/proxyapi.sock").
_port = os.environ.get("PORT")
bind = [os.environ.get("GUNICORN_BIND") or (f"0.0.0.0:{_port}" if _port else "127.0.0.1:8000")]

# gthread (one thread per in-flight request, so long SSE streams run side by side and the
# worker timeout is only a heartbeat, not a cap on stream length; sync workers get killed in
# the middle of a stream, and gevent is not in the dependency set), with one change: a request
# is read whole on the worker's event loop before a thread gets it. Plain gthread gives a
# thread the connection at its first byte, and that thread then waits on the client with no
# time limit: a few dozen clients that trickle their headers or never send the body they
# announced hold every thread. No gunicorn setting bounds that (`timeout` is the worker
# heartbeat, `keepalive` the idle time between requests); server.client_timeout does here.
# See proxyapi/worker.py.
worker_class = "proxyapi.worker.BufferingWorker"

# Embedded mode (no REDIS_URL) keeps limits and breakers in process memory, which is exact only
# with one worker; with Redis the state is shared, so use the cores.
workers = int(
    os.environ.get("WEB_CONCURRENCY")
    or (2 * (os.cpu_count() or 1) if os.environ.get("REDIS_URL") else 1)
)

# Threads = concurrent requests per worker, streams included: an LLM stream holds its thread
# for its whole length.
threads = int(os.environ.get("GUNICORN_THREADS", "32"))

# Open connections per worker: those still sending their request and idle kept-alive ones
# hold no thread, so this is about file descriptors, not threads. A worker whose threads (and a
# short queue, threads // 4) are all busy stops accepting meanwhile, so new connections go to a
# worker with a free thread rather than wait behind busy streams.
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "1000"))

# Under gthread this is the worker heartbeat, not a request time limit.
timeout = 30

# Heroku-style platforms SIGKILL 30 s after SIGTERM: finish in-flight requests within 25 s.
graceful_timeout = 25

# Idle seconds a client connection is kept open between requests.
keepalive = 5

# Recycling workers cuts the streams in flight (the old worker stops heart-beating and is
# killed after `timeout`): off unless GUNICORN_MAX_REQUESTS is set, e.g. to contain a leak.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "0"))

# The app builds its connection pools per worker; preloading would share them across forks.
preload_app = False

# The control socket (gunicorn >= 25.1) is not used, and a second instance on the same host
# would take it over.
control_socket_disable = True

# Logs to stderr, where platforms collect them. Access log off by default: the app logs one
# line per request with its request id. Set GUNICORN_ACCESS_LOG=- to get gunicorn's as well.
errorlog = "-"
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
loglevel = os.environ.get("LOG_LEVEL", "info").lower()


def on_starting(server):
    """Once, in the master: check the config and start the metrics directory afresh."""
    from proxyapi import serving

    serving.on_starting(server)


def on_reload(server):
    """On SIGHUP, in the master: re-read the config for the workers started next."""
    from proxyapi import serving

    serving.on_reload(server)


def worker_exit(server, worker):
    """In a worker, as it exits: send the spans it still holds (tracing, when on)."""
    from proxyapi import tracing

    tracing.worker_exit(worker)


def child_exit(server, worker):
    """In the master, when a worker has exited."""
    from proxyapi import serving

    serving.child_exit(server, worker)


def on_exit(server):
    """In the master, on shutdown."""
    from proxyapi import serving

    serving.on_exit(server)
