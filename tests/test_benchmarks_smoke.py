"""Smoke test of the benchmark machinery: bench_training.py --quick runs and writes its results.

Benchmarks are never timed assertions; this only checks the script works end to end and that its
JSON has the documented shape (machine facts, checks with ratios against named limits). It writes
into a temporary folder so the committed full-run results are never touched.
"""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_training_quick_writes_results(subprocess_env, tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_training.py"), "--quick",
                           "--results-dir", str(tmp_path)],
                          cwd=tmp_path, env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "training.json").read_text())
    md = (tmp_path / "training.md").read_text()
    assert data["quick"] is True
    m = data["machine"]
    assert m["cores"] >= 1 and m["cpu_model"] and isinstance(m["gpu_used"], bool)
    ids = {c["id"] for c in data["checks"]}
    assert {"T1-zoo-digits", "T1-input-digits"} <= ids
    for c in data["checks"]:
        assert c["ratio_q1"] <= c["ratio_p50"] <= c["ratio_q3"]
        assert c["value"] > 0 and c["limit"] > 0 and c["rounds"] >= 3
        assert c["direction"] in (">=", "<=") and isinstance(c["met"], bool)
    assert "| T1-zoo-digits |" in md and "Quick run" in md
