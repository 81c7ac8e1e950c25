"""Serving tests share two helper modules (tiny SavedModels, a load generator and server
processes) from this folder, whichever subfolder a test lives in."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
