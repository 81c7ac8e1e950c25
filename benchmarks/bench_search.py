"""Q2: which search strategy finds the best per-layer widths at 0.35x of doubling's parameters?

Fashion-MNIST. The reference is doubling at depth 6 from 32 kernels (32-32-64-64-128-128); the
budget is `--budget-fraction` (0.35) of its parameters. Each strategy searches depth-6 per-layer
widths of 8..96 kernels (slim's wide network: 96 everywhere) with the same wall-clock budget
(`--minutes`; slim takes what its one training takes) on the first `--train-limit` training images:

  a  random per-layer search as drawn, the budget a cap (rejections)   zoo-tune --no-fill-budget
  b  random per-layer search, every draw filled to the budget          zoo-tune
  c  Hyperband per-layer search, filled                                 zoo-tune --tuner hyperband
  d  slim: one wide training learns the profile, filled, one trial     zoo-tune --mode slim
  e  random per-layer search whose first trial is the slim profile     zoo-tune --seed-from slim

Then each winner, doubling fitted to the same budget and the full doubling are trained again from
scratch with the shared recipe for `--seeds` seeds (2 processes x 1 TF thread) and scored on the
official test set; each strategy is compared with budget-matched doubling by the paired per-seed
difference and a Student-t 95% interval. Results: benchmarks/results/search.{json,md}.

Needs Fashion-MNIST locally (Debian/Ubuntu: `apt-get install dataset-fashion-mnist` as root;
elsewhere Keras downloads it once when online). Each strategy's project stays in runs/q2/; a rerun
reuses finished searches and finished final runs (`--overwrite` starts over).
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from cnnzoo.files import write_json_atomic

from _common import RESULTS_DIR, ROOT, machine_info, machine_line

DEPTH = 6
REFERENCE_BASE = 32
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}

STRATEGIES: dict[str, dict[str, Any]] = {
    "a_random_capped": dict(mode="per_layer", tuner="random", fill_budget=False,
                            max_consecutive_failures=200, max_rejections=2000, max_trials=500),
    "b_random_filled": dict(mode="per_layer", tuner="random", max_trials=500),
    "c_hyperband_filled": dict(mode="per_layer", tuner="hyperband"),
    "d_slim": dict(mode="slim"),
    "e_slim_seeded": dict(mode="per_layer", tuner="random", seed_from="slim", max_trials=500),
}


def _data(train_limit: int, val_limit: int) -> Any:
    import zoo

    data = zoo.datasets.load("fashion_mnist", download=False)
    data.x_train, data.y_train = data.x_train[:train_limit], data.y_train[:train_limit]
    data.x_val, data.y_val = data.x_val[:val_limit], data.y_val[:val_limit]
    return data


def run_strategy(name: str, args: argparse.Namespace, budget: int, data: Any) -> dict[str, Any]:
    import tuning

    start = time.perf_counter()
    result = tuning.search(
        dataset=data, depth=(DEPTH, DEPTH), filters=(8, 96), epochs=args.epochs,
        max_params=budget, max_minutes=None if name == "d_slim" else args.minutes,
        directory=str(ROOT / "runs" / "q2"), project=name, overwrite=args.overwrite, seed=0,
        patience=0, verbose=1, **STRATEGIES[name])
    wall = time.perf_counter() - start
    rows = result.leaderboard()
    done = [r for r in rows if r["status"] == "COMPLETED"]
    slim_file = result.project_dir / "slim.json"
    slim = json.loads(slim_file.read_text()) if slim_file.exists() else None
    return {"strategy": name, "wall_seconds_this_run": round(wall, 1), "trained": len(done),
            "rejected": result.rejected, "winner": done[0]["filters"],
            "winner_profile": done[0]["profile"], "winner_params": done[0]["params"],
            "winner_val_accuracy": done[0]["metric"], "slim": slim}


def _final(job: tuple[str, list[int], int, int, int]) -> dict[str, Any]:
    """One from-scratch training with the recipe; runs in a worker process with 1 TF thread."""
    label, filters, seed, train_limit, val_limit = job
    import keras
    import zoo

    data = _data(train_limit, val_limit)
    model = zoo.build("custom", filters=filters, input_shape=data.input_shape,
                      num_classes=data.num_classes, seed=seed)
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    zoo.Recipe().fit(model, data.x_train, data.y_train)
    seconds = time.perf_counter() - start
    _, acc = model.evaluate(data.x_test, data.y_test, verbose=0)[:2]
    return {"label": label, "filters": filters, "seed": seed, "test_accuracy": float(acc),
            "params": int(zoo.describe(model).total_params), "macs": int(zoo.describe(model).total_macs),
            "train_seconds": round(seconds, 1)}


def _paired(a: list[float], b: list[float]) -> dict[str, float]:
    d = [x - y for x, y in zip(a, b)]
    mean = statistics.fmean(d)
    if len(d) < 2:
        return {"mean": mean, "low": float("nan"), "high": float("nan")}
    half = T_975.get(len(d) - 1, 1.96) * statistics.stdev(d) / math.sqrt(len(d))
    return {"mean": mean, "low": mean - half, "high": mean + half}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30.0, help="wall-clock budget per search strategy")
    p.add_argument("--epochs", type=int, default=3, help="epochs per search trial (Hyperband's max)")
    p.add_argument("--train-limit", type=int, default=10_000)
    p.add_argument("--val-limit", type=int, default=3_000)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--budget-fraction", type=float, default=0.35)
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    import zoo

    out_json = RESULTS_DIR / "search.json"
    state: dict[str, Any] = json.loads(out_json.read_text()) if out_json.exists() and not args.overwrite else {}
    reference = zoo.plan("doubling", depth=DEPTH, base_filters=REFERENCE_BASE)
    arch = dict(input_shape=(28, 28, 1), num_classes=10)
    ref_params = zoo.describe(zoo.build("doubling", depth=DEPTH, base_filters=REFERENCE_BASE, **arch)).total_params
    budget = int(round(args.budget_fraction * ref_params))
    matched = zoo.plan("doubling", depth=DEPTH, max_params=budget, **arch)
    state.update(settings=vars(args), reference={"filters": list(reference), "params": int(ref_params)},
                 budget=budget, machine=machine_info())
    strategies = state.setdefault("strategies", {})
    data = _data(args.train_limit, args.val_limit)
    for name in args.strategies.split(","):
        if name in strategies and not args.overwrite:
            continue
        print(f"== strategy {name} ({args.minutes:g} min budget)", flush=True)
        start = time.perf_counter()
        res = run_strategy(name, args, budget, data)
        res["wall_seconds"] = round(time.perf_counter() - start, 1)
        strategies[name] = res
        _save(out_json, state)

    finals = state.setdefault("finals", [])
    have = {(f["label"], f["seed"]) for f in finals}
    entries = {"doubling_matched": [int(w) for w in matched], "doubling_full": list(reference)}
    entries.update({k: [int(w) for w in v["winner"].split("-")] for k, v in strategies.items()})
    jobs = [(label, filters, seed, args.train_limit, args.val_limit)
            for seed in range(args.seeds) for label, filters in entries.items()
            if (label, seed) not in have]
    print(f"== {len(jobs)} final trainings ({len(entries)} networks x {args.seeds} seeds)", flush=True)
    os.environ["ZOO_TF_THREADS"] = "1"
    with mp.get_context("spawn").Pool(2) as pool:
        for res in pool.imap_unordered(_final, jobs):
            finals.append(res)
            print(f"   {res['label']:<20} seed {res['seed']} {res['test_accuracy']:.4f} "
                  f"({res['train_seconds']:.0f}s)", flush=True)
            _save(out_json, state)
    state["summary"] = _summary(state, entries)
    _save(out_json, state)
    (RESULTS_DIR / "search.md").write_text(_markdown(state), encoding="utf-8")
    print((RESULTS_DIR / "search.md").read_text())
    return 0


def _summary(state: dict[str, Any], entries: dict[str, list[int]]) -> dict[str, Any]:
    by: dict[str, dict[int, dict[str, Any]]] = {}
    for f in state["finals"]:
        by.setdefault(f["label"], {})[f["seed"]] = f
    base = by.get("doubling_matched", {})
    out = {}
    for label in entries:
        runs = by.get(label, {})
        accs = [runs[s]["test_accuracy"] for s in sorted(runs)]
        seeds = [s for s in sorted(runs) if s in base]
        row = {"filters": entries[label], "n": len(accs),
               "mean": statistics.fmean(accs) if accs else None,
               "std": statistics.stdev(accs) if len(accs) > 1 else None,
               "params": next(iter(runs.values()))["params"] if runs else None,
               "macs": next(iter(runs.values()))["macs"] if runs else None,
               "train_seconds": statistics.fmean(r["train_seconds"] for r in runs.values()) if runs else None}
        if label != "doubling_matched" and seeds:
            row["vs_matched"] = _paired([runs[s]["test_accuracy"] for s in seeds],
                                        [base[s]["test_accuracy"] for s in seeds])
        out[label] = row
    return out


def _markdown(state: dict[str, Any]) -> str:
    s, summ = state["settings"], state["summary"]
    L = ["# Q2: search strategies at equal cost (Fashion-MNIST)", "",
         f"Reference: doubling {'-'.join(map(str, state['reference']['filters']))} "
         f"({state['reference']['params']:,} params); budget {state['budget']:,} params "
         f"({s['budget_fraction']}x). Searches: {s['minutes']:g} min each, {s['epochs']}-epoch trials "
         f"on the first {s['train_limit']:,} training images, validation on {s['val_limit']:,} held-out "
         f"training images. Finals: each network trained from scratch with the shared recipe on the "
         f"same {s['train_limit']:,} images, {s['seeds']} seeds, scored on the 10,000 test images.", "",
         f"Machine: {machine_line(state['machine'])}.", "",
         "## Searches", "", "| strategy | wall s | trained | rejected | winner (built) | profile | params | val acc |",
         "|---|---|---|---|---|---|---|---|"]
    for k, v in state["strategies"].items():
        L.append(f"| {k} | {v['wall_seconds']:.0f} | {v['trained']} | {v['rejected']} | {v['winner']} | "
                 f"{v['winner_profile']} | {v['winner_params']:,} | {v['winner_val_accuracy']:.4f} |")
    slim = state["strategies"].get("d_slim", {}).get("slim")
    if slim:
        L += ["", f"Slim learned the profile {'-'.join(map(str, slim['profile']))} from a "
                  f"{'-'.join(map(str, slim['wide']))} network in {slim['seconds']:.0f} s "
                  f"({slim['epochs']} epochs, strength {slim['strength']:g})."]
    L += ["", "## Finals (test accuracy, mean +- std over seeds)", "",
          "| network | filters | params | MACs | test acc | vs doubling at the same budget (paired, 95% CI) |",
          "|---|---|---|---|---|---|"]
    for k, r in summ.items():
        if r["mean"] is None:
            continue
        vs = r.get("vs_matched")
        cell = (f"{100 * vs['mean']:+.2f} pts [{100 * vs['low']:+.2f}, {100 * vs['high']:+.2f}]"
                + (" (above 0)" if vs["low"] > 0 else " (below 0)" if vs["high"] < 0 else " (covers 0)")
                if vs and not math.isnan(vs["low"]) else "-")
        std = f" +- {r['std']:.4f}" if r["std"] is not None else ""
        L.append(f"| {k} | {'-'.join(map(str, r['filters']))} | {r['params']:,} | {r['macs']:,} | "
                 f"{r['mean']:.4f}{std} (n={r['n']}) | {cell} |")
    return "\n".join(L) + "\n"


def _save(path: Path, state: dict[str, Any]) -> None:
    write_json_atomic(path, state, default=str)


if __name__ == "__main__":
    sys.exit(main())
