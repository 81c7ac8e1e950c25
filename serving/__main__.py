"""`python -m serving` runs the model server (same as `zoo-serve`)."""
import sys

from serving.server.cli import main

sys.exit(main())
