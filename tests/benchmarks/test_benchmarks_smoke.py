"""Smoke test of the benchmark machinery: bench_training.py --quick runs and writes its results.

Benchmarks are never timed assertions; this only checks the script works end to end and that its
JSON has the documented shape (machine facts, checks with ratios against named limits). It writes
into a temporary folder so the committed full-run results are never touched.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from _bench import bench_module

ROOT = Path(__file__).resolve().parents[2]


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


# --- the shared helpers, without running anything heavy -------------------------------------

def _bench_modules():
    return bench_module("_common"), bench_module("run_all")


def test_percentile_and_check_validate_and_compute():
    common, _ = _bench_modules()
    assert common.percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5  # numpy's linear interpolation
    with pytest.raises(ValueError, match="q must be in"):
        common.percentile([1.0], 101)
    with pytest.raises(ValueError, match="no values"):
        common.percentile([], 50)
    c = common.check("X", "x vs y", value=2.0, limit=1.0, ratios=[1.9, 2.0, 2.2], target=1.3,
                     direction="<=", unit="ms", value_name="x", limit_name="y")
    assert c["ratio_p50"] == 2.0 and c["met"] is False and c["rounds"] == 3
    with pytest.raises(ValueError, match="direction must be one of"):
        common.check("X", "x", value=1, limit=1, ratios=[1.0], target=1, direction="<",
                     unit="", value_name="a", limit_name="b")
    with pytest.raises(ValueError, match="ratios is empty"):
        common.check("X", "x", value=1, limit=1, ratios=[], target=1, direction=">=",
                     unit="", value_name="a", limit_name="b")


def test_run_all_readme_combines_json_files(tmp_path):
    common, run_all = _bench_modules()
    machine = {"platform": "Linux", "python": "3.11", "cpu_model": "cpu", "cores": 2,
               "load_average_at_start": [0.0, 0.0, 0.0], "tensorflow": "2.21", "gpu_used": False,
               "gpus": []}
    for name, met in (("training", True), ("serving", False)):
        c = common.check(f"{name}-1", "a vs b", value=1.0, limit=1.0, ratios=[1.0 if met else 2.0],
                         target=1.5, direction="<=", unit="s", value_name="a", limit_name="b")
        common.write_results(name, {"name": name, "title": name.title(), "quick": False,
                                    "finished": "now", "duration_s": 1.0, "machine": machine,
                                    "checks": [c]}, results_dir=tmp_path)
    (tmp_path / "junk.json").write_text("{not json")
    assert run_all.main(["--readme-only", "--results-dir", str(tmp_path)]) == 0
    text = (tmp_path / "README.md").read_text()
    assert text.index("| training-1 |") < text.index("| serving-1 |")  # benchmark order
    assert "1 of 2 targets met." in text and "[Training](training.md)" in text
    with pytest.raises(SystemExit):
        run_all.main(["--only", "nope", "--readme-only"])


def test_a_median_that_meets_the_target_while_the_measured_values_do_not_is_not_met():
    """benchmarks/results/README called Q1-digits "met": median per-seed ratio 1.000, but a mean
    accuracy of 0.979 against doubling's 0.982."""
    common, run_all = _bench_modules()
    q1 = common.check("Q1-digits", "search vs doubling", value=0.979, limit=0.982,
                      ratios=[0.989, 1.0, 1.011], target=1.0, direction=">=", unit="acc",
                      value_name="per-layer", limit_name="doubling")
    assert q1["met"] and not common.clearly_met(q1)
    row = common.checks_table([q1]).splitlines()[2]
    assert row.endswith("| unclear: median ratio 1.000 meets it, 0.979 / 0.982 = 0.997 does not |")
    fine = dict(q1, value=0.983)
    assert common.clearly_met(fine) and common.checks_table([fine]).endswith("| yes |\n")
    assert "0 of 1 targets met." in run_all.readme([{"name": "q", "title": "Q", "finished": "now",
                                                      "duration_s": 1.0, "checks": [q1],
                                                      "machine": _MACHINE}])


_MACHINE = {"platform": "Linux", "python": "3.11", "cpu_model": "cpu", "cores": 2,
            "load_average_at_start": [0.0, 0.0, 0.0], "tensorflow": "2.21", "gpu_used": False,
            "gpus": []}


def test_bench_test_suite_records_a_log_made_by_hand(tmp_path):
    bench = bench_module("bench_test_suite")
    log = tmp_path / "suite.log"
    log.write_text("....\n============ slowest durations ============\n"
                   "12.50s call     tests/test_a.py::test_x\n3.25s setup    tests/test_b.py::test_y[1]\n"
                   "========== 2 passed, 1 skipped in 20.50s (0:00:20) ==========\n"
                   "\tUser time (seconds): 30.5\n\tSystem time (seconds): 2.5\n"
                   "\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:02.50\n")
    assert bench.main(["--from-log", str(log), "--label", "by hand", "--results-dir", str(tmp_path)]) == 0
    run = json.loads((tmp_path / "test_suite.json").read_text())[-1]
    assert run["summary"] == "2 passed, 1 skipped" and run["pytest_s"] == 20.5
    assert (run["wall_s"], run["user_s"], run["sys_s"]) == (62.5, 30.5, 2.5)
    assert [s["test"] for s in run["slowest"]] == ["tests/test_a.py::test_x", "tests/test_b.py::test_y[1]"]
    md = (tmp_path / "test_suite.md").read_text()
    assert "| 1: by hand |" in md and "1.0 min | 0.6 min | 2 passed, 1 skipped |" in md
    assert "| 12.50 | call | `tests/test_a.py::test_x` |" in md



def test_bench_test_suite_runs_another_checkouts_code_first(tmp_path):
    """--repo DIR: DIR leads PYTHONPATH, so the processes its tests start import DIR's packages."""
    bench = bench_module("bench_test_suite")
    repo = tmp_path / "checkout"
    (repo / "tests").mkdir(parents=True)
    (repo / "tests" / "test_where.py").write_text(
        "import os\n\ndef test_where():\n"
        f"    assert os.environ['PYTHONPATH'].split(os.pathsep)[0] == {str(repo)!r}\n")
    result = bench.run_suite(repo, tmp_path / "log.txt")
    assert result["exit_code"] == 0, (tmp_path / "log.txt").read_text()[-2000:]
    assert "1 passed" in (tmp_path / "log.txt").read_text()


def test_profile_categories_charge_each_sample_to_its_innermost_known_frame(tmp_path):
    """bench_serving --profile splits the server's samples by where S2's CPU goes (issue 30)."""
    profile = bench_module("_profile")
    site = "/x/site-packages/"
    raw = tmp_path / "S2.txt"
    raw.write_text("\n".join([
        # a model run inside a batch's merge counts as the model
        f"thread (1);run (/r/serving/server/batching.py:1);_run_merged (/r/serving/server/batching.py:2);"
        f"_call_flat ({site}tensorflow/python/eager/polymorphic_function/concrete_function.py:3) 6",
        f"thread (1);work (/r/serving/server/grpc_host.py:1);FromString ({site}google/protobuf/message.py:2) 2",
        "thread (1);_run_merged (/r/serving/server/batching.py:2);concatenate (<__array_function__ internals>:1) 1",
        "thread (1);mystery (/r/elsewhere.py:1) 1",
    ]) + "\n")
    shares = profile.categorize(raw)
    assert shares["model run (TensorFlow)"] == 0.6 and shares["proto parsing and serializing"] == 0.2
    assert shares["batch merge and split"] == 0.1 and shares["other"] == 0.1
    text = profile.report(profile.summarize(raw), "server during S2", shares)
    assert "| 60.0% | model run (TensorFlow) |" in text
