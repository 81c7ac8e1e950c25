"""Q2: which search strategy finds the best per-layer widths at 0.35x of doubling's parameters AND
the MACs doubling uses there?

Fashion-MNIST. The reference is doubling at depth 6 from 32 kernels (32-32-64-64-128-128); the
budget is `--budget-fraction` (0.35) of its parameters and the MACs of doubling fitted to those
parameters, so budget-matched doubling is the one network that uses both. Each strategy searches
depth-6 per-layer widths of 8..96 kernels (slim's wide network: 96 everywhere) with the same
wall-clock budget (`--minutes`, 15; slim takes what its one training takes) on the first
`--train-limit` training images, `--search-seeds` (2) times with different oracle seeds:

  b  random per-layer search, every draw filled to the budget          zoo-tune
  d  slim: one wide training learns the profile, filled, one trial     zoo-tune --mode slim
  e  random per-layer search whose first trial is the slim profile     zoo-tune --seed-from slim
  c  Hyperband per-layer search, filled (optional: --strategies)       zoo-tune --tuner hyperband

b and e never share an oracle seed (e's seeds are offset), so e measures its own draws. Then each
winner, doubling fitted to the budget and the full doubling are trained again from scratch with
the shared recipe for `--seeds` (5) seeds (2 processes x 1 TF thread) and scored on the official
test set; each is compared with budget-matched doubling by the pooled paired model over all
networks with Holm control, beside its own paired interval (tuning.comparisons.stats). Results:
benchmarks/results/q2/search.{json,md} (benchmarks/results/search.* hold the earlier, shorter
protocol: 10-minute searches, one search seed, 3 final seeds).

Needs Fashion-MNIST locally (Debian/Ubuntu: `apt-get install dataset-fashion-mnist` as root;
elsewhere Keras downloads it once when online). Every stage resumes: each search's project stays
in runs/q2/ (keras-tuner resumes it), a finished search and every finished final training are
recorded in search.json at once, and a rerun resumes only the protocol it would repeat (other
`PROTOCOL` settings are refused by name; `--overwrite` starts over).
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

from cnnzoo.files import write_atomic, write_json_atomic

from _common import RESULTS_DIR, ROOT, machine_info, machine_line

from tabulate import tabulate

from tuning.comparisons.stats import paired_interval, pooled_contrasts

DEPTH = 6
REFERENCE_BASE = 32
# Oracle seeds: e's are offset from b's so the two never draw the same networks.
SEED_OFFSET = {"e_slim_seeded": 100}
# The settings every recorded search and final depends on: resuming with others would mix two
# protocols in one table. More seeds, search seeds or strategies extend a study instead.
PROTOCOL = ("dataset", "minutes", "epochs", "train_limit", "val_limit", "budget_fraction",
            "final_epochs")

STRATEGIES: dict[str, dict[str, Any]] = {
    "a_random_capped": dict(mode="per_layer", tuner="random", fill_budget=False,
                            max_consecutive_failures=200, max_rejections=2000, max_trials=500),
    "b_random_filled": dict(mode="per_layer", tuner="random", max_trials=500),
    "c_hyperband_filled": dict(mode="per_layer", tuner="hyperband"),
    "d_slim": dict(mode="slim"),
    "e_slim_seeded": dict(mode="per_layer", tuner="random", seed_from="slim", max_trials=500),
}


def _data(train_limit: int, val_limit: int, dataset: str = "fashion_mnist") -> Any:
    import zoo

    data = zoo.datasets.load(dataset, **({"download": False} if dataset == "fashion_mnist" else {}))
    data.x_train, data.y_train = data.x_train[:train_limit], data.y_train[:train_limit]
    data.x_val, data.y_val = data.x_val[:val_limit], data.y_val[:val_limit]
    return data


def run_strategy(name: str, args: argparse.Namespace, budget: dict[str, int], data: Any,
                 seed: int) -> dict[str, Any]:
    import tuning

    start = time.perf_counter()
    result = tuning.search(
        dataset=data, depth=(DEPTH, DEPTH), filters=(8, 96), epochs=args.epochs,
        max_params=budget["params"], max_macs=budget["macs"],
        max_minutes=None if name == "d_slim" else args.minutes,
        directory=str(args.runs_dir), project=f"{name}_s{seed}", overwrite=args.overwrite,
        seed=seed + SEED_OFFSET.get(name, 0), patience=0, verbose=1, **STRATEGIES[name])
    wall = time.perf_counter() - start
    rows = result.leaderboard()
    done = [r for r in rows if r["status"] == "COMPLETED"]
    slim_file = result.project_dir / "slim.json"
    slim = json.loads(slim_file.read_text()) if slim_file.exists() else None
    return {"strategy": name, "search_seed": seed, "oracle_seed": seed + SEED_OFFSET.get(name, 0),
            "wall_seconds_this_run": round(wall, 1), "trained": len(done),
            "rejected": result.rejected, "winner": done[0]["filters"],
            "winner_profile": done[0]["profile"], "winner_params": done[0]["params"],
            "winner_macs": done[0].get("macs"),
            "winner_val_accuracy": done[0]["metric"], "slim": slim}


def _final(job: tuple[str, list[int], int, int, int, str, int | None]) -> dict[str, Any]:
    """One from-scratch training with the recipe; runs in a worker process with 1 TF thread."""
    label, filters, seed, train_limit, val_limit, dataset, epochs = job
    import keras
    import zoo

    data = _data(train_limit, val_limit, dataset)
    model = zoo.build("custom", filters=filters, input_shape=data.input_shape,
                      num_classes=data.num_classes, seed=seed)
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    zoo.Recipe(epochs=epochs).fit(model, data.x_train, data.y_train, verbose=0, seed=None)
    seconds = time.perf_counter() - start
    _, acc = model.evaluate(data.x_test, data.y_test, verbose=0)[:2]
    return {"label": label, "filters": filters, "seed": seed, "test_accuracy": float(acc),
            "params": int(zoo.describe(model).total_params), "macs": int(zoo.describe(model).total_macs),
            "train_seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=15.0, help="wall-clock budget per search")
    p.add_argument("--epochs", type=int, default=3, help="epochs per search trial (Hyperband's max)")
    p.add_argument("--train-limit", type=int, default=10_000)
    p.add_argument("--val-limit", type=int, default=3_000)
    p.add_argument("--seeds", type=int, default=5, help="seeds of each final training")
    p.add_argument("--search-seeds", type=int, default=2, help="searches per strategy")
    p.add_argument("--budget-fraction", type=float, default=0.35)
    p.add_argument("--strategies", default="b_random_filled,d_slim,e_slim_seeded",
                   help=f"any of {','.join(STRATEGIES)} (Hyperband and capped random optional)")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--final-epochs", type=int, default=None, help="default: the recipe's")
    p.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "q2")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR / "q2")
    p.add_argument("--processes", type=int, default=2, help="final trainings side by side")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    out_json = args.results_dir / "search.json"
    state: dict[str, Any] = json.loads(out_json.read_text()) if out_json.exists() and not args.overwrite else {}
    saved = state.get("settings", {})
    differ = [f"--{k.replace('_', '-')} {saved.get(k)} -> {getattr(args, k)}" for k in PROTOCOL
              if state and saved.get(k) != getattr(args, k)]
    if differ:
        print(f"bench_search: {out_json} was made with other settings ({'; '.join(differ)}); "
              "pass --overwrite or another --results-dir", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    import zoo

    data = _data(args.train_limit, args.val_limit, args.dataset)
    arch = dict(input_shape=data.input_shape, num_classes=data.num_classes)
    reference = zoo.plan("doubling", depth=DEPTH, base_filters=REFERENCE_BASE, **arch)
    ref_desc = zoo.describe(zoo.build("doubling", depth=DEPTH, base_filters=REFERENCE_BASE, **arch))
    ref_params = ref_desc.total_params
    params_budget = int(round(args.budget_fraction * ref_params))
    # Doubling fitted to the parameter budget sets the MAC budget: it is the one network that
    # uses both, and every strategy must fit under both.
    by_params = zoo.plan("doubling", depth=DEPTH, max_params=params_budget, **arch)
    budget = {"params": params_budget, "macs": int(by_params.costs.macs)}
    matched = zoo.plan("doubling", depth=DEPTH, max_params=budget["params"],
                       max_macs=budget["macs"], **arch)
    state.update(settings={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                 reference={"filters": list(reference), "params": int(ref_params),
                            "macs": int(ref_desc.total_macs)},
                 budget=budget, machine=machine_info())
    strategies = state.setdefault("strategies", {})
    for name in args.strategies.split(","):
        for seed in range(args.search_seeds):
            key = f"{name}_s{seed}"
            if key in strategies and not args.overwrite:
                continue
            print(f"== strategy {key} ({args.minutes:g} min budget)", flush=True)
            start = time.perf_counter()
            res = run_strategy(name, args, budget, data, seed)
            res["wall_seconds"] = round(time.perf_counter() - start, 1)
            strategies[key] = res
            _save(out_json, state)

    finals = state.setdefault("finals", [])
    have = {(f["label"], f["seed"]) for f in finals}
    entries = {"doubling_matched": [int(w) for w in matched], "doubling_full": list(reference)}
    entries.update({k: [int(w) for w in v["winner"].split("-")] for k, v in strategies.items()})
    jobs = [(label, filters, seed, args.train_limit, args.val_limit, args.dataset, args.final_epochs)
            for seed in range(args.seeds) for label, filters in entries.items()
            if (label, seed) not in have]
    print(f"== {len(jobs)} final trainings ({len(entries)} networks x {args.seeds} seeds)", flush=True)
    os.environ["ZOO_TF_THREADS"] = "1"

    def record(results: Any) -> None:
        for res in results:
            finals.append(res)
            print(f"   {res['label']:<20} seed {res['seed']} {res['test_accuracy']:.4f} "
                  f"({res['train_seconds']:.0f}s)", flush=True)
            _save(out_json, state)

    if jobs and args.processes > 1:
        with mp.get_context("spawn").Pool(args.processes) as pool:
            record(pool.imap_unordered(_final, jobs))
    else:  # one process: train here (a spawned worker would start TensorFlow again for nothing)
        record(map(_final, jobs))
    state["summary"] = _summary(state, entries)
    _save(out_json, state)
    write_atomic(args.results_dir / "search.md", _markdown(state))
    print((args.results_dir / "search.md").read_text())
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
            iv = paired_interval([runs[s]["test_accuracy"] - base[s]["test_accuracy"] for s in seeds])
            row["vs_matched"] = {"mean": iv.mean, "low": iv.low, "high": iv.high}
        out[label] = row
    # Pooled over every network (the seed as the block), Holm over the comparisons with
    # budget-matched doubling; the full doubling is not at the budget, so not in the family.
    acc = {(f["label"], f["seed"]): f["test_accuracy"] for f in state["finals"]
           if f["label"] in entries and f["label"] != "doubling_full"}
    for label, iv in pooled_contrasts(acc, "doubling_matched").items():
        out[label]["pooled"] = {"mean": iv.mean, "low": iv.low, "high": iv.high, "df": iv.df,
                                "sim_low": iv.sim_low, "sim_high": iv.sim_high,
                                "p_holm": iv.p_holm}
    return out


def _markdown(state: dict[str, Any]) -> str:
    s, summ = state["settings"], state["summary"]
    L = ["# Q2: search strategies at equal cost (Fashion-MNIST)", "",
         f"Reference: doubling {'-'.join(map(str, state['reference']['filters']))} "
         f"({state['reference']['params']:,} params); budget {state['budget']['params']:,} params "
         f"({s['budget_fraction']}x) and {state['budget']['macs']:,} MACs (doubling's at those "
         f"params). {s['search_seeds']} searches per strategy. Searches: {s['minutes']:g} min each, "
         f"{s['epochs']}-epoch trials "
         f"on the first {s['train_limit']:,} training images, validation on {s['val_limit']:,} held-out "
         f"training images. Finals: each network trained from scratch with the shared recipe on the "
         f"same {s['train_limit']:,} images, {s['seeds']} seeds, scored on the 10,000 test images.", "",
         f"Machine: {machine_line(state['machine'])}.", "",
         "## Searches", "",
         tabulate([[k, v.get("oracle_seed", ""), f"{v['wall_seconds']:.0f}", v["trained"], v["rejected"],
                    v["winner"], v["winner_profile"], f"{v['winner_params']:,}",
                    f"{v['winner_macs']:,}" if v.get("winner_macs") else "",
                    f"{v['winner_val_accuracy']:.4f}"] for k, v in state["strategies"].items()],
                  ["search", "oracle seed", "wall s", "trained", "rejected", "winner (built)",
                   "profile", "params", "MACs", "val acc"], tablefmt="github", disable_numparse=True)]
    for key, search in state["strategies"].items():
        slim = search.get("slim")  # every search that trained a wide network: d, and e's seed
        if slim:
            L += ["", f"{key}: slim learned the profile {'-'.join(map(str, slim['profile']))} from a "
                      f"{'-'.join(map(str, slim['wide']))} network in {slim['seconds']:.0f} s "
                      f"({slim['epochs']} epochs, strength {slim['strength']:g})."]
    rows = []
    for k, r in summ.items():
        if r["mean"] is None:
            continue
        std = f" +- {r['std']:.4f}" if r["std"] is not None else ""
        pooled = r.get("pooled") or {}
        rows.append([k, "-".join(map(str, r["filters"])), f"{r['params']:,}", f"{r['macs']:,}",
                     f"{r['mean']:.4f}{std} (n={r['n']})", _iv(r.get("vs_matched")), _iv(pooled),
                     _iv(pooled, "sim_"), f"{pooled['p_holm']:.3g}" if pooled.get("p_holm") is not None
                     and not math.isnan(pooled["p_holm"]) else ""])
    L += ["", "## Finals (test accuracy, mean +- std over seeds)", "",
          tabulate(rows, ["network", "filters", "params", "MACs", "test acc",
                          "vs matched doubling, own paired 95% CI", "pooled 95% CI",
                          "pooled simultaneous CI", "Holm p"], tablefmt="github",
                   disable_numparse=True), "",
          "Differences in accuracy points against doubling fitted to both budgets, paired by "
          "seed. Own paired CI: Student's t over that network's per-seed differences. Pooled: "
          "accuracy = network + seed + noise over every network at the budget, residual "
          "variance pooled; Holm controls the family of comparisons with matched doubling "
          "(the full doubling is outside the budget and outside the family); the simultaneous "
          "interval is Bonferroni's. A strategy beats doubling at both budgets when its Holm p "
          "<= 0.05 with a positive difference."]
    return "\n".join(L) + "\n"


def _iv(d: dict[str, float] | None, prefix: str = "") -> str:
    if not d or d.get(prefix + "low") is None or math.isnan(d[prefix + "low"]):
        return "-"
    return (f"{100 * d['mean']:+.2f} [{100 * d[prefix + 'low']:+.2f}, "
            f"{100 * d[prefix + 'high']:+.2f}]")


def _save(path: Path, state: dict[str, Any]) -> None:
    write_json_atomic(path, state, default=str)


if __name__ == "__main__":
    sys.exit(main())
