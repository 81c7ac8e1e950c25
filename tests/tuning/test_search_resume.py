"""Fault tolerance and chief/worker mode, with real `python -m tuning` processes (slow).

The processes under test (the one killed, the chief and its workers, the launcher) are real; a
plain run after them, which only has to resume, is `zoo-tune`'s main() called in-process."""
import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from tuning.searches.cli import main

pytestmark = pytest.mark.slow

# "[2/5 trials |##        | 00:09<00:14] trial 1 COMPLETED per_layer/plain ..."
TRIAL_LINE = re.compile(r"^\[.*?\].*? trial (\S+) (?:COMPLETED|REJECTED|FAILED|INVALID) ")


def _cmd(directory, max_trials, *extra):
    return [sys.executable, "-m", "tuning", "--mode", "per_layer", "--depth", "2", "3",
            "--filters", "8", "16", "--epochs", "2", "--train-limit", "200", "--patience", "0",
            "--batch-sizes", "32",
            "--max-trials", str(max_trials), "--directory", str(directory), "--verbose", "1",
            "--seed", "7", *extra]


def _finished_trials(output):
    return [m.group(1) for line in output.splitlines() if (m := TRIAL_LINE.match(line))]


def _wait_for_port(proc, port, timeout=120):
    """Until something accepts connections on `port` (or `proc` exits, or `timeout` passes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)


def _oracle_trials(project_dir):
    trials = {}
    for d in sorted(project_dir.glob("trial_*")):
        t = json.loads((d / "trial.json").read_text())
        trials[t["trial_id"]] = t["status"]
    return trials


def test_kill_9_mid_search_then_rerun_resumes(tmp_path, subprocess_env, capsys):
    runs = tmp_path / "runs"
    proc = subprocess.Popen(_cmd(runs, 5), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=subprocess_env)
    first = []
    deadline = time.monotonic() + 240
    try:
        for line in proc.stdout:  # kill -9 as soon as two trials have finished
            if TRIAL_LINE.match(line):
                first.append(TRIAL_LINE.match(line).group(1))
                if len(first) == 2:
                    time.sleep(0.5)  # the third trial is now being built/trained
                    proc.send_signal(signal.SIGKILL)
                    break
            assert time.monotonic() < deadline, "search too slow"
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL and len(first) == 2

    capsys.readouterr()
    assert main(_cmd(runs, 5)[3:]) == 0  # the same flags, in-process
    rerun = _finished_trials(capsys.readouterr().out)
    assert not set(rerun) & set(first), "a completed trial ran again"
    project = runs / "digits-per_layer-random"
    trials = _oracle_trials(project)
    assert len(trials) == 5 and set(trials.values()) == {"COMPLETED"}
    assert sorted(first + rerun) == sorted(trials)  # every trial finished exactly once
    with open(project / "leaderboard.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 5

    # A third run of the same command has nothing left to do and trains nothing.
    assert main(_cmd(runs, 5)[3:]) == 0 and _finished_trials(capsys.readouterr().out) == []


def test_chief_and_two_workers_run_every_trial_once(tmp_path, subprocess_env, free_port):
    runs = tmp_path / "runs"
    port = free_port()
    env = dict(subprocess_env, KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=str(port))
    # The budget rejects some models: the chief's oracle must not count them towards the 4.
    cmd = _cmd(runs, 4, "--project", "dist", "--max-params", "2500", "--no-fill-budget")
    chief = subprocess.Popen(cmd, env=dict(env, KERASTUNER_TUNER_ID="chief"),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for_port(chief, port)  # workers also retry while it starts; this spares them the wait
    workers = [subprocess.Popen(cmd, env=dict(env, KERASTUNER_TUNER_ID=f"tuner{i}"),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for i in range(2)]
    outs = []
    try:
        for p in workers + [chief]:
            out, _ = p.communicate(timeout=300)
            outs.append(out)
            assert p.returncode == 0, out[-3000:]
    finally:
        for p in workers + [chief]:
            if p.poll() is None:
                p.kill()
                p.wait()
    ran = [t for out in outs[:2] for t in _finished_trials(out)]
    assert all(_finished_trials(out) for out in outs[:2]), "a worker ran no trial"
    assert sorted(ran) == sorted(set(ran))  # every trial once, none twice
    with open(runs / "dist" / "leaderboard.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["trial"] for r in rows) == sorted(ran)  # the chief's leaderboard has them all
    statuses = [r["status"] for r in rows]
    assert statuses.count("COMPLETED") == 4 and set(statuses) == {"COMPLETED", "REJECTED"}
    assert (runs / "dist" / "report.md").is_file()


def test_workers_2_runs_every_trial_once_and_resumes_after_a_kill(tmp_path, subprocess_env, capfd):
    """`zoo-tune --workers 2`: the launcher starts keras-tuner's chief and two workers itself."""
    runs = tmp_path / "runs"
    # 2,500 params: every depth (2 or 3) can fill it within --filters 8 16
    cmd = _cmd(runs, 5, "--project", "local", "--workers", "2", "--max-params", "2500")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=subprocess_env, start_new_session=True)
    first = []
    try:
        for line in proc.stdout:  # kill the whole group (launcher, chief, workers) after 2 trials
            if TRIAL_LINE.match(line):
                first.append(TRIAL_LINE.match(line).group(1))
                if len(first) == 2:
                    os.killpg(proc.pid, signal.SIGKILL)
                    break
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(first) == 2

    # The rerun's launcher is main() in-process (its chief and workers are processes of their
    # own, writing to this process's stdout): the killed launcher above was the fresh process.
    capfd.readouterr()
    code = main(cmd[3:])
    second = capfd.readouterr()
    assert code == 0, second.out[-3000:] + second.err[-3000:]
    rerun = _finished_trials(second.out)
    assert not set(rerun) & set(first), "a completed trial ran again"
    trials = _oracle_trials(runs / "local")
    assert sorted(first + rerun) == sorted(trials) and set(trials.values()) == {"COMPLETED"}
    assert len(trials) == 5
    with open(runs / "local" / "leaderboard.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5 and all(abs(int(r["params"]) - 2500) <= 75 for r in rows)
