"""R1-R5: the reliability suite's figures (bad-input cases, load, hot reload, kill -9 + restart).

    python benchmarks/bench_reliability.py [--quick] [--results-dir DIR]

Runs tests/serving/server/test_reliability_*.py (the same code, so the figures are what the tests assert on:
servers as `python -m serving` subprocesses, the load generator of tests/serving/_reliability.py) with
ZOO_RECORD_RESULTS=1, which makes each test store its figures; then writes
results/reliability.json and .md. --quick runs only the fast files (bad input, security) and so
records no load figures. Exit status 1 if any test failed (its checks are then marked not met).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import _common

TESTS = sorted(str(p.relative_to(_common.ROOT))
               for p in (_common.ROOT / "tests" / "serving" / "server").glob("test_reliability_*.py"))
METHOD = ("Every figure comes from a test of tests/serving/server/test_reliability_*.py run by this script with "
          "ZOO_RECORD_RESULTS=1: real `python -m serving` subprocesses on 127.0.0.1, client processes "
          "(spawned, each with threads) mixing gRPC (pre-serialized PredictRequest, tensor_content) and REST "
          "(row-format JSON), batch 1, every answer's class_id compared with the in-process SavedModel's. "
          "Latencies are per request, measured in the clients, and include the 2-core machine being "
          "shared by the server, all client processes and anything else running.")


def run_tests(quick: bool, sections: Path, junit: Path) -> tuple[int, dict[str, Any]]:
    env = dict(os.environ, ZOO_RECORD_RESULTS="1", ZOO_RELIABILITY_SECTIONS=str(sections),
               TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *TESTS]
    if quick:
        argv += ["-m", "not slow"]
    print(f"[reliability] {' '.join(argv[1:])}", flush=True)
    rc = subprocess.call(argv, cwd=_common.ROOT, env=env)
    counts = {"passed": 0, "failed": 0, "skipped": 0, "failed_tests": []}
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            outcome = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
            key = {"failure": "failed", "error": "failed"}.get(outcome, outcome)
            counts[key] += 1
            if key == "failed":
                counts["failed_tests"].append(f"{case.get('classname')}::{case.get('name')}")
    return rc, counts


def _ratio_check(cid: str, what: str, value: float, limit: float, target: float, direction: str, unit: str,
                 value_name: str, limit_name: str, passed: bool, extra: dict | None = None) -> dict[str, Any]:
    ratio = value / limit if limit else 0.0
    c = _common.check(cid, what, value=value, limit=limit, ratios=[ratio], target=target, direction=direction,
                      unit=unit, value_name=value_name, limit_name=limit_name, extra=extra)
    c["met"] = bool(c["met"] and passed)  # a failed test never counts as met
    return c


def checks(sections: dict[str, Any], counts: dict[str, Any]) -> list[dict[str, Any]]:
    ok = counts["failed"] == 0
    out = []
    if "bad_input" in sections:
        b = sections["bad_input"]
        out.append(_ratio_check("R1-bad-input", f"bad-input matrix: {b['grpc_cases']} gRPC + {b['rest_cases']} REST "
                                "cases with their expected code, then the same PID answers correctly",
                                b["cases"], b["cases"], 1.0, ">=", "cases", "cases as expected", "cases", ok))
    for cid, key, what in (("R2-load", "load", "10,000 requests, 32 concurrent clients, gRPC + REST mixed"),
                           ("R3-hot-reload", "hot_reload", "16 clients while a version is added, a corrupt one "
                                                           "appears and the config is swapped")):
        if key in sections:
            s = sections[key]
            bad = s["errors"] + s["wrong"]
            out.append(_ratio_check(cid, what + ": failed or wrong answers / requests", bad, s["requests"], 0.0,
                                    "<=", "requests", "failed + wrong", "requests", ok,
                                    {"p50_ms": s["latency_ms_all"]["p50"], "p99_ms": s["latency_ms_all"]["p99"],
                                     "throughput_rps": s["throughput_rps"]}))
    if "hot_reload" in sections:
        s = sections["hot_reload"]
        noticed = s["new_version_served_after_s"] - s["new_version_load_s"]
        out.append(_ratio_check("R4-reload-pickup", "new version: from rename to first answer, less its load time "
                                f"({s['new_version_load_s']} s), within 2 poll periods", noticed, 2 * s["poll_s"],
                                1.0, "<=", "s", "rename -> served - load", "2 poll periods", ok))
    if "kill9_restart" in sections:
        s = sections["kill9_restart"]
        out.append(_ratio_check("R5-kill9-restart", "kill -9 mid-load, restart: same versions AVAILABLE, no error "
                                "> 2 s after ready, no wrong answer", s["wrong"], max(1, s["answered"]), 0.0, "<=",
                                "answers", "wrong", "answered", ok and s["errors_only_while_down"],
                                {"downtime_s": s["downtime_s"]}))
    return out


def figures_table(sections: dict[str, Any]) -> str:
    rows = ["| scenario | clients | requests | errors | wrong | req/s | p50 ms | p99 ms | max ms |",
            "|---|---|---|---|---|---|---|---|---|"]
    for key, label in (("load", "load"), ("hot_reload", "hot reload"), ("kill9_restart", "kill -9 + restart")):
        if key not in sections:
            continue
        s = sections[key]
        lat = s.get("latency_ms_all", {})
        rows.append(f"| {label} | {s['clients']} | {s['requests']:,} | {s['errors']} | {s['wrong']} | "
                    f"{s['throughput_rps']} | {lat.get('p50')} | {lat.get('p99')} | {lat.get('max')} |")
    notes = []
    if "load" in sections:
        s = sections["load"]
        notes.append(f"Load: gRPC p50/p99 {s['latency_ms_grpc']['p50']}/{s['latency_ms_grpc']['p99']} ms, "
                     f"REST p50/p99 {s['latency_ms_rest']['p50']}/{s['latency_ms_rest']['p99']} ms "
                     f"({s['grpc']:,} gRPC + {s['rest']:,} REST answers).")
    if "hot_reload" in sections:
        s = sections["hot_reload"]
        notes.append(f"Hot reload (poll {s['poll_s']} s): the new version answered {s['new_version_served_after_s']} s "
                     f"after its rename (its load took {s['new_version_load_s']} s), config swap applied after "
                     f"{s['config_swap_applied_after_s']} s; the corrupt version's status: "
                     f"`{s['corrupt_version_status'][:120]}...`")
    if "kill9_restart" in sections:
        s = sections["kill9_restart"]
        notes.append(f"kill -9: the server was down {s['downtime_s']} s (restart = new process: Python, TensorFlow, "
                     f"model load); the {s['errors']} errors all fell inside that window.")
    return "\n".join(rows) + "\n\n" + "\n\n".join(notes) + "\n"


def main(argv: list[str] | None = None) -> int:
    run = _common.Run("reliability", "R1-R5: reliability under bad input, load, hot reload and kill -9", METHOD, argv)
    with tempfile.TemporaryDirectory() as tmp:
        sections_path, junit = Path(tmp) / "sections.json", Path(tmp) / "junit.xml"
        rc, counts = run_tests(run.quick, sections_path, junit)
        sections = json.loads(sections_path.read_text()) if sections_path.exists() else {}
    for s in sections.values():
        s.pop("error_times", None)
    run.details = {"tests": counts, "sections": sections, "test_files": TESTS}
    for c in checks(sections, counts):
        run.add(c)
    summary = (f"Tests: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
               + (f" (failed: {', '.join(counts['failed_tests'])})" if counts["failed_tests"] else "") + ".\n\n")
    run.finish(summary + figures_table(sections))
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
