"""`python -m tuning` is `zoo-tune`."""
import sys

from tuning.searches.cli import main

sys.exit(main())
