import sys

from rvos.cli.main import main

sys.exit(main())
