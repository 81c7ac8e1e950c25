"""`make demo`'s pipeline (scripts/demo.py) with a tiny budget: search -> export -> serve -> query.

Run twice on one folder: the first run does everything and stops its server; the second resumes
the searches (no new trials), keeps serving (--keep-serving) until it gets SIGINT, and must then
stop the server too.
"""
from __future__ import annotations

import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--trials", "2", "--per-layer-trials", "1", "--epochs", "1", "--train-limit", "200",
        "--latency-requests", "10", "--port", "0", "--rest-port", "0"]


def _closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except OSError:
        return True


def _ports(out: str) -> tuple[int, int]:
    m = re.search(r"AVAILABLE after [\d.]+ s: gRPC 127\.0\.0\.1:(\d+), REST http://127\.0\.0\.1:(\d+)", out)
    assert m, out[-3000:]
    return int(m.group(1)), int(m.group(2))


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, subprocess_env):
    demo_dir = tmp_path_factory.mktemp("demo")
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), "--dir", str(demo_dir), *TINY],
                            capture_output=True, text=True, env=subprocess_env, timeout=400)
    return demo_dir, result


@pytest.mark.slow
def test_first_run_searches_exports_serves_and_stops(first_run):
    demo_dir, result = first_run
    out = result.stdout
    assert result.returncode == 0, (out + result.stderr)[-4000:]
    assert "Traceback" not in result.stderr
    # both searches ran, under the budget, with doubling among >= 4 rules
    assert re.search(r"--mode rule --rules doubling,\S+,\S+,\S+ .*--max-params", out)
    assert re.search(r"'rules': [1-9]\d* new trials this run", out)
    assert re.search(r"'per_layer': [1-9]\d* new trials this run", out)
    # served accuracy: the same over both APIs, and equal to the stable version's own
    m = re.search(r"digits@stable \(version (\d)\): gRPC ([\d.]+), REST ([\d.]+) on 270 images; "
                  r"gRPC and REST answers identical", out)
    assert m, out[-3000:]
    assert m.group(2) == m.group(3)
    assert re.search(rf"version {m.group(1)} \(.*\): test accuracy {m.group(2)}", out)
    assert re.search(r"winner  : \S+ +filters [\d-]+ +[\d,]+ params", out)
    assert re.search(r"doubling: same cost +filters [\d-]+ +[\d,]+ params", out)
    for api in ("gRPC", "REST"):
        assert re.search(rf"{api} +p50 +[\d.]+ ms +p99 +[\d.]+ ms +\(10 requests\)", out)
    # what it leaves behind
    for project in ("rules", "per_layer"):
        for name in ("report.md", "pareto.png", "filters.png", "leaderboard.csv"):
            assert (demo_dir / "search" / project / name).is_file()
    assert {p.name for p in (demo_dir / "saved_models" / "digits").iterdir()} >= {"1", "2"}
    config = (demo_dir / "saved_models" / "models.config").read_text()
    assert re.search(r'key: "stable"\s+value: 2', config) and re.search(r'key: "canary"\s+value: 1', config)
    # the server is gone
    assert "server stopped" in out
    assert all(_closed(p) for p in _ports(out))


def _like_a_terminal_job() -> None:
    """In the child, before exec: SIGINT as a terminal's foreground job has it.

    A shell starts background jobs (a CI run started with `&`) with SIGINT ignored, the child
    inherits that, and Python then never raises KeyboardInterrupt: Ctrl-C could not be tested.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_rerun_resumes_and_sigint_stops_the_server(first_run, subprocess_env):
    demo_dir, first = first_run
    assert first.returncode == 0
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "demo.py"), "--dir", str(demo_dir),
                             *TINY, "--keep-serving"], preexec_fn=_like_a_terminal_job,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=subprocess_env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    out = ""
    try:
        deadline = time.monotonic() + 300
        while "Ctrl-C to stop" not in out:
            assert time.monotonic() < deadline and proc.poll() is None, out[-3000:]
            try:
                out += lines.get(timeout=1)
            except queue.Empty:
                pass
        assert re.search(r"search 'rules' \(resuming, \d+ trials on disk\)", out)
        assert out.count("0 new trials this run") == 2  # nothing retrained
        grpc_port, rest_port = _ports(out)
        from serving import RestClient
        with RestClient(f"http://127.0.0.1:{rest_port}") as client:
            assert client.status("digits", label="stable")[0]["state"] == "AVAILABLE"
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)  # the demo prints every thread's stack: where it hangs
            time.sleep(3)
            while not lines.empty():
                out += lines.get()
            raise AssertionError(f"the demo did not stop within 60 s of SIGINT:\n{out[-6000:]}") from None
        assert code == 130, out[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(0.5)
    while not lines.empty():
        out += lines.get()
    assert "interrupted" in out and "server stopped" in out
    assert _closed(grpc_port) and _closed(rest_port)


def test_dataset_presets_and_a_missing_local_copy(tmp_path, monkeypatch, capsys):
    """`make demo DATASET=...` (fast, in-process): presets fill what is not given, and a standard
    set without a local copy is one clear line before anything runs (the demo never downloads)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import demo
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    import zoo.dataset_files as files

    digits = demo.resolve(demo.build_parser().parse_args([]))
    assert (digits.dataset, digits.model, digits.epochs, digits.train_limit) == ("digits", "digits", 6, 0)
    assert digits.dir.endswith("runs/demo")
    fashion = demo.resolve(demo.build_parser().parse_args(["--dataset", "fashion_mnist", "--epochs", "2"]))
    assert fashion.epochs == 2 and 0 < fashion.train_limit and 0 < fashion.test_limit
    assert fashion.dir.endswith("runs/demo-fashion_mnist") and fashion.model == "fashion_mnist"
    argv = demo._tune_argv(fashion, "rules")
    assert argv[argv.index("--dataset") + 1] == "fashion_mnist"
    assert argv[argv.index("--train-limit") + 1] == str(fashion.train_limit)
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(files, "SYSTEM_DATA_DIR", tmp_path)
    assert demo.main(["--dataset", "fashion_mnist", "--dir", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no local copy of 'fashion_mnist'" in err and "Data" in err
    assert not (tmp_path / "d").exists()
