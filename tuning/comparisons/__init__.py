"""Equal-budget comparisons: every rule x budget x seed with one recipe, and their statistics.

`compare.compare` is the entry point (`tuning.compare`, `zoo-compare` through `cli`); `config`
holds the settings and the grid of runs, `hypermodel`/`oracle`/`tuner` run them as a keras-tuner
grid, `runs` keeps runs.jsonl, `stats` computes every estimate, `report` and `plots` format them.
"""
