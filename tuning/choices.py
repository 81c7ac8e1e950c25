"""The names the command lines offer, in a module without Keras, so `--help` stays instant."""

MODES = ("rule", "per_layer")
TUNER_NAMES = ("random", "bayesian", "hyperband", "grid")
DISTRIBUTIONS = ("mirrored",)
