"""`python -m seriesforge ...`: the CLI, for job entrypoints on nodes where the console script is not on PATH."""

import sys

from seriesforge.cli import main

sys.exit(main())
