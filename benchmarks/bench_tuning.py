"""T2: search overhead and memory growth of `tuning.search` over many tiny trials.

    python benchmarks/bench_tuning.py [--quick] [--trials 30]

One in-process search on digits (per-layer mode, depth 2-3, 4-32 filters, 1 epoch on 200 images,
so that the fixed per-trial cost is as large a share as it will ever be). `keras.Model.fit` is
wrapped for this process only, to record every trial's whole `fit` call (Keras' own set-up of data
adapters and callbacks included: that is training, not search overhead) and the process RSS when
each fit returns.
  overhead  wall time of the whole search / sum of the trials' fit times: what keras-tuner, model
            building, budget costs (describe + latency), checkpoints and reports add to training.
            Issue 7's target is <= 1.10; these deliberately tiny trials (about a second of
            training each) are the worst case, so the script also reports the overhead in seconds
            per trial, which says from which fit time on the 1.10 target holds.
  rss       RSS growth across the trials: last trial's RSS minus the first trial's (after the
            first trial TF, tracing caches and keras-tuner are warm), target <= 150 MB as in the
            issue; also the least-squares slope from trial 5 on (MiB/trial), with clear_session
            between trials (keras-tuner's own _try_build).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (sets TF_CPP_MIN_LOG_LEVEL and sys.path before TF loads)
import argparse

import keras

FITS: list[dict[str, float]] = []


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


def time_every_fit() -> None:
    """Record the wall time of each `Model.fit` call and the RSS after it."""
    fit = keras.Model.fit

    def timed_fit(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return fit(self, *args, **kwargs)
        finally:
            FITS.append({"fit_s": time.perf_counter() - start, "rss_mib": rss_mib()})
    keras.Model.fit = timed_fit


def slope(ys: list[float]) -> float:
    n = len(ys)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, sum(ys) / n
    return sum((i - mx) * (y - my) for i, y in enumerate(ys)) / sum((i - mx) ** 2 for i in range(n))


def main() -> None:
    parser = argparse.ArgumentParser(description="T2: tuning.search overhead and RSS growth")
    parser.add_argument("--trials", type=int, default=30)
    run = _common.Run("tuning", "T2: tuning.search overhead and memory over tiny trials",
                      __doc__.split("\n\n", 2)[2], parser=parser)
    trials = 8 if run.quick else run.args.trials
    import tuning

    time_every_fit()

    rss_start = rss_mib()
    with tempfile.TemporaryDirectory() as d:
        start = time.perf_counter()
        result = tuning.search(dataset="digits", mode="per_layer", max_trials=trials, epochs=1,
                               train_limit=200, depth=(2, 3), filters=(4, 32), directory=d,
                               seed=0, verbose=0, progress=None, patience=0)
        wall = time.perf_counter() - start
    fit_total = sum(f["fit_s"] for f in FITS)
    per_trial = (wall - fit_total) / max(1, len(FITS))
    run.add(_common.check(
        "T2.overhead", f"search wall / sum of fit times, {len(FITS)} tiny trials", value=wall,
        limit=fit_total, ratios=[wall / fit_total], target=1.10, direction="<=", unit="s",
        value_name="search wall", limit_name="sum of fits",
        extra={"overhead_s_per_trial": per_trial,
               "fit_s_for_target": per_trial / 0.10}))  # fit time at which the ratio is 1.10
    rss = [f["rss_mib"] for f in FITS]
    growth_mb = (rss[-1] - rss[0]) * 1.048576  # MiB -> MB (the unit)
    run.add(_common.check(
        "T2.rss", f"RSS growth from trial 1 to trial {len(rss)}", value=growth_mb, limit=150.0,
        ratios=[growth_mb / 150.0], target=1.0, direction="<=", unit="MB",
        value_name="growth", limit_name="budget"))
    tail = rss[4:] if len(rss) > 6 else rss
    growth = slope(tail)
    run.details.update(rss_slope_mib_per_trial=growth, trials=len(FITS), completed=result.completed, wall_s=wall,
                       fit_s_total=fit_total, rss_start_mib=rss_start, rss_per_trial_mib=rss,
                       fit_s_per_trial=[f["fit_s"] for f in FITS])
    run.finish(f"Overhead per trial: {per_trial:.2f} s (the 1.10 target holds for trials whose fit takes "
               f">= {per_trial / 0.10:.0f} s). RSS: {rss[0]:.0f} MiB after trial 1, {rss[-1]:.0f} MiB "
               f"after trial {len(rss)}; slope from trial 5 on {growth:.2f} MiB/trial.\n")


if __name__ == "__main__":
    main()
