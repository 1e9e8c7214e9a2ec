"""Development entry point: ``python app.py`` serves on $PORT (default 8000) with Flask's server.

Use gunicorn (see README) for anything but local development.
"""

import os

from proxyapi import create_app

if __name__ == "__main__":
    create_app().run(host="127.0.0.1", port=int(os.environ.get("PORT", "8000")), threaded=True)
