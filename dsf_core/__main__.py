import sys

from dsf_core.cli.main import main

sys.exit(main())
