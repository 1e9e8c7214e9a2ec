"""gunicorn settings for ProxyAPI: ``gunicorn -c gunicorn.conf.py wsgi:app``.

Everything comes from the environment, Heroku-style: PORT, WEB_CONCURRENCY, REDIS_URL,
GUNICORN_THREADS. This file is re-read on every SIGHUP, so it does nothing but assign settings
(the hooks run once, when gunicorn calls them).
"""

import os
import sys

# Bind on every interface when the platform gives a PORT (Heroku-style), else on loopback.
# GUNICORN_BIND overrides both (e.g. "127.0.0.1:8080" or "unix:/run/proxyapi.sock").
_port = os.environ.get("PORT")
bind = [os.environ.get("GUNICORN_BIND") or (f"0.0.0.0:{_port}" if _port else "127.0.0.1:8000")]

# gthread: one thread per in-flight request, so long SSE streams run side by side and the
# worker timeout is only a heartbeat, not a cap on stream length. (sync workers get killed in
# the middle of a stream; gevent is not in the dependency set.)
worker_class = "gthread"

# Embedded mode (no REDIS_URL) keeps limits and breakers in process memory, which is exact only
# with one worker; with Redis the state is shared, so use the cores.
workers = int(
    os.environ.get("WEB_CONCURRENCY")
    or (2 * (os.cpu_count() or 1) if os.environ.get("REDIS_URL") else 1)
)

# Threads = concurrent requests per worker, streams included: an LLM stream holds its thread
# for its whole length.
threads = int(os.environ.get("GUNICORN_THREADS", "32"))

# Accept a few more connections than threads (room for idle keep-alive connections), but not
# gunicorn's default 1000: connections accepted beyond the threads wait behind busy streams
# even when another worker has a free thread.
worker_connections = threads + max(4, threads // 4)

# Under gthread this is the worker heartbeat, not a request time limit.
timeout = 30

# Heroku-style platforms SIGKILL 30 s after SIGTERM: finish in-flight requests within 25 s.
graceful_timeout = 25

# Idle seconds a client connection is kept open between requests.
keepalive = 5

# Recycling workers would cut long streams; leave it off.
max_requests = 0

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
    """Check the config once, in the master, before any worker starts.

    A typo stops the start with one clear line; so does a worker count that per-process rate
    limits cannot honour (N workers with memory:// would make every limit N times larger).
    """
    from proxyapi.config import ConfigError, load_config
    from proxyapi.ratelimit import per_process_problem

    try:
        config = load_config()
    except ConfigError as exc:
        print(f"proxyapi: config error: {exc}", file=sys.stderr)
        sys.exit(1)
    problem = per_process_problem(config, server.cfg.workers)
    if problem:
        print(f"proxyapi: refusing to start: {problem}", file=sys.stderr)
        sys.exit(1)
