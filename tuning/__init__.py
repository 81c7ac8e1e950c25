"""cnn-zoo tuning: keras-tuner searches over filter-growth rules and per-layer kernel counts."""
from zoo import _env  # noqa: F401
