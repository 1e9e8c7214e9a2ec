"""Production entry point: ``gunicorn -c gunicorn.conf.py wsgi:app``.

gunicorn imports this module in each worker after the fork (``preload_app`` is off), so the
app and its connection pools are built per worker process, from the config the master
checked.
"""

from proxyapi import create_app, serving

# Under gunicorn.conf.py the master has checked the config (on start and on each SIGHUP).
app = create_app(serving.master_config())
