"""``python -m tests.chaos [--duration S] [--seed N]``: one chaos run, its report printed."""

import sys

from tests.chaos.run import main

sys.exit(main())
