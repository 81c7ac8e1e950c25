"""`python -m tuning` is `zoo-tune`."""
import sys

from tuning.cli import main

sys.exit(main())
