import sys

from skyfall_core.cli import main

sys.exit(main())
