"""The console script's entry point: the command line module imported where Ctrl-C is caught.

Importing the command line (pydantic, the settings) takes a tenth of a second; a Ctrl-C in it
printed a 30-line traceback instead of the one line the commands print once started.
"""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def main() -> int:
    try:
        from idaas_sync_exporter.cli import main as run
    except KeyboardInterrupt:
        print("idaas-sync-exporter: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return run()
