import sys

from idaas_sync_exporter.launcher import main

sys.exit(main())
