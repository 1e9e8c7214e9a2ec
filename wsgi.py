"""Production entry point: ``gunicorn -c gunicorn.conf.py wsgi:app``.

gunicorn imports this module in each worker after the fork (``preload_app`` is off), so the
app and its connection pools are built per worker process.
"""

from proxyapi import create_app

app = create_app()
