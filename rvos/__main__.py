import sys

from rvos.cli import main

sys.exit(main())
