import sys

from idaas_sync_exporter.cli import main

sys.exit(main())
