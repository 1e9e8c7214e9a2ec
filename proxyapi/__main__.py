"""``python -m proxyapi``: the command-line tools."""

from proxyapi.cli import main

main()
