"""`python -m helpers ...`: the command line (helpers.run.cli)."""
import sys

from .run.cli import main

sys.exit(main())
