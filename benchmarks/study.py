"""`make study`: is doubling right on Fashion-MNIST? Every rule at three parameter budgets, 3 seeds.

Runs `zoo-compare` (2 local workers) on Fashion-MNIST and records its table, plots, wall time and
machine under benchmarks/results/study/. Needs the data locally: on Debian/Ubuntu
`apt-get install dataset-fashion-mnist` (as root); elsewhere run once with network so Keras
downloads it into ~/.keras/datasets, or put the four IDX .gz files in $ZOO_DATA_DIR/fashion-mnist/.
Rerunning resumes (finished runs are kept in runs/study/); `--overwrite` starts over.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time

from _common import RESULTS_DIR, ROOT, machine_info, machine_line

RULES = "doubling,constant,linear,geometric,regnet,decreasing,hourglass,diamond"
# Sized for about an hour on 2 cores: 72 runs of 10,000 training images x 5 epochs each.
ARGS = ["--dataset", "fashion_mnist", "--rules", RULES, "--max-params", "15000,40000,100000",
        "--seeds", "3", "--depth", "6", "--base-filters", "16", "--epochs", "5",
        "--train-limit", "10000", "--workers", "2", "--directory", str(ROOT / "runs"),
        "--project", "study"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    from zoo.dataset_files import NotFoundLocally, find_local

    try:
        find_local("fashion_mnist")
    except NotFoundLocally as exc:
        print(f"study: {exc}. Install it (Debian/Ubuntu: apt-get install dataset-fashion-mnist) or "
              "let Keras download it once: python -c \"import keras; "
              "keras.datasets.fashion_mnist.load_data()\"", file=sys.stderr)
        return 2
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "tuning.compare_cli", *ARGS] + (["--overwrite"] if args.overwrite else [])
    code = subprocess.call(cmd, cwd=ROOT)
    wall = time.perf_counter() - start
    if code:
        return code
    project = ROOT / "runs" / "study"
    out = RESULTS_DIR / "study"
    out.mkdir(parents=True, exist_ok=True)
    for name in ("compare.md", "compare.csv", "compare.png", "profiles.png"):
        shutil.copy2(project / name, out / name)
    machine = machine_info()
    (out / "study.json").write_text(json.dumps(
        {"command": "zoo-compare " + " ".join(ARGS), "wall_seconds": round(wall),
         "machine": machine}, indent=2) + "\n")
    (out / "README.md").write_text(
        f"# Fashion-MNIST study\n\n`zoo-compare {' '.join(a for a in ARGS if not a.startswith(str(ROOT)))}`"
        f"\n\n{round(wall / 60)} min wall time (this invocation; a resumed study counts only "
        f"what it ran) on {machine_line(machine)}.\n\nSee compare.md, compare.png and profiles.png.\n")
    print(f"study: {round(wall / 60)} min; results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
