"""Searches: keras-tuner over filter-growth rules and per-layer kernel counts.

The parts, as keras-tuner separates them: the space (`hypermodel`, `constraints` one level up), the
strategy (`oracles`), the execution (`tuners`), the run (`driver`: preflight, search, rerank,
outputs) and one-shot width learning (`slim`, `slim_profile`). `cli` is `zoo-tune`;
`export_winners` is tuning's one bridge to serving. Public names are imported from `tuning`.
"""
