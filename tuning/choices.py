"""The names the command lines offer, in a module without Keras, so `--help` stays instant."""

MODES = ("rule", "per_layer")  # the hypermodel's search spaces
SEARCH_MODES = MODES + ("slim",)  # slim learns per-layer widths in one training
TUNER_NAMES = ("random", "bayesian", "hyperband", "grid")
DISTRIBUTIONS = ("mirrored",)
