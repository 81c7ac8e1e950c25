"""The four CLIs with the project's own flags (zoo-serve keeps TF Serving's) follow the one flag
vocabulary written down in tuning/README.md: the same flag in every tool the table names (and in
no other), help text on every flag, old spellings that still parse as the new flag with a
deprecation warning; input mistakes are reported in flag names before TensorFlow loads."""
import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from serving.exporter import cli as export_cli

from serving.client import cli as query_cli
from tuning.searches import cli as tune_cli
from tuning.comparisons import cli as compare_cli

ROOT = Path(__file__).resolve().parents[1]
TOOLS = {"zoo-tune": tune_cli.build_parser, "zoo-compare": compare_cli.build_parser,
         "zoo-export": export_cli.build_parser, "zoo-query": query_cli.build_parser}
NONE = ("–", "-", "")


def _table():
    text = (ROOT / "tuning" / "README.md").read_text(encoding="utf-8")
    section = text.split("## One flag vocabulary", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, (c.strip() for c in ln.strip("|").split("|")))) for ln in lines[2:]]
    assert rows and set(TOOLS) <= set(header), header
    return rows


ROWS = _table()


def _options(parser):
    """option string -> action, for every flag a parser accepts (help excluded)."""
    return {opt: a for a in parser._actions for opt in a.option_strings if opt not in ("-h", "--help")}


def _deprecated(parser):
    return {opt: a for opt, a in _options(parser).items() if a.help == argparse.SUPPRESS}


@pytest.mark.parametrize("row", ROWS, ids=[r["concept"] for r in ROWS])
def test_each_tool_has_the_flag_exactly_where_the_table_says(row):
    flag = re.findall(r"--[a-z][a-z-]*", row["flag"])
    assert len(flag) == 1, row
    for tool, build in TOOLS.items():
        options = _options(build())
        if row[tool] in NONE:
            assert flag[0] not in options, f"{tool} has {flag[0]}, the table says it does not"
        else:
            assert flag[0] in options, f"{tool} lacks {flag[0]}"
            action = options[flag[0]]
            assert action.help and action.help != argparse.SUPPRESS, f"{tool} {flag[0]}: no help"


@pytest.mark.parametrize("tool", TOOLS)
def test_every_flag_has_help_text(tool):
    for opt, action in _options(TOOLS[tool]()).items():
        assert action.help, f"{tool} {opt} has no help text"


def test_every_flag_two_tools_share_is_in_the_table():
    listed = {re.findall(r"--[a-z][a-z-]*", r["flag"])[0] for r in ROWS}
    seen: dict[str, set] = {}
    for tool, build in TOOLS.items():
        for opt, action in _options(build()).items():
            if action.help != argparse.SUPPRESS and opt.startswith("--"):
                seen.setdefault(opt, set()).add(tool)
    shared = {opt for opt, tools in seen.items() if len(tools) > 1}
    # --batch-size of zoo-query is the request size, not training's: a different concept, a
    # different name (--batch-sizes); --json/--timeout/... belong to one tool each
    assert shared <= listed, sorted(shared - listed)


def test_the_old_spellings_are_the_table_s_and_are_hidden():
    listed = {(tool, old) for r in ROWS
              for tool, old in re.findall(r"`(zoo-[a-z]+) (--[a-z-]+)`", r["old spellings (warn)"])}
    actual = {(tool, old) for tool, build in TOOLS.items() for old in _deprecated(build())}
    assert listed == actual
    for r in ROWS:
        flag = re.findall(r"--[a-z][a-z-]*", r["flag"])[0]
        for tool, old in re.findall(r"`(zoo-[a-z]+) (--[a-z-]+)`", r["old spellings (warn)"]):
            assert flag in _deprecated(TOOLS[tool]())[old].new, (tool, old, flag)


# old argv, new argv: the same parse, plus one warning line naming the new flag
SPELLINGS = [
    ("zoo-tune", ["--export-name", "m"], ["--model-name", "m"]),
    ("zoo-tune", ["--block", "residual"], ["--blocks", "residual"]),
    ("zoo-tune", ["--seed-rule", "doubling"], ["--seed-from", "doubling"]),  # was an alias: no warning
    ("zoo-compare", ["--budgets", "2000,4000"], ["--max-params", "2000,4000"]),
    ("zoo-compare", ["--budgets", "9000", "--budget-kind", "macs"], ["--max-macs", "9000"]),
    ("zoo-compare", ["--max-params", "9", "--block", "residual"], ["--max-params", "9", "--blocks", "residual"]),
    ("zoo-compare", ["--max-params", "9", "--batch-size", "16"], ["--max-params", "9", "--batch-sizes", "16"]),
    ("zoo-compare", ["--max-params", "9", "--learning-rate", "0.01"],
     ["--max-params", "9", "--learning-rates", "0.01"]),
    ("zoo-export", ["m.keras", "--base-dir", "d", "--name", "n"],
     ["m.keras", "--export-dir", "d", "--model-name", "n"]),
    ("zoo-query", ["--model", "digits", "status"], ["--model-name", "digits", "status"]),
]


def _parsed(tool, argv):
    if tool == "zoo-compare":  # what CompareConfig gets: budgets and their kind
        args = vars(compare_cli._parse(argv))
        return {k: v for k, v in args.items() if k not in ("max_params", "max_macs")}
    return vars(TOOLS[tool]().parse_args(argv))


@pytest.mark.parametrize("tool, old, new", SPELLINGS, ids=[f"{t} {o[-2]}" for t, o, _ in SPELLINGS])
def test_an_old_spelling_parses_as_the_new_flag_with_a_warning(tool, old, new, capsys):
    assert _parsed(tool, old) == _parsed(tool, new)
    err = capsys.readouterr().err.strip().splitlines()
    deprecated = [o for o in old if o in _deprecated(TOOLS[tool]())]
    assert len(err) == len(deprecated) and all(" is deprecated; use --" in ln for ln in err), err
    assert all(ln.startswith(f"{tool}: warning: ") for ln in err), err


def test_depth_takes_one_value_where_a_range_is_also_allowed():
    assert tune_cli.build_parser().parse_args(["--depth", "6"]).depth == [6]
    assert compare_cli._parse(["--max-params", "9", "--depth", "6"]).depth == 6
    with pytest.raises(SystemExit):
        compare_cli._parse(["--max-params", "9", "--depth", "4", "6"])  # one depth per study


def test_compare_needs_a_budget_and_pairs_params_with_macs(capsys):
    for argv in ([], ["--max-params", "9", "--max-macs", "9,10"], ["--budget-kind", "macs"]):
        with pytest.raises(SystemExit) as exc:
            compare_cli._parse(argv)
        assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--max-params N[,N...] or --max-macs" in err and "pair up" in err
    args = compare_cli._parse(["--max-params", "9,20", "--max-macs", "90,200"])
    assert (args.budget_kind, args.budgets) == ("both", ["9:90", "20:200"])


def test_epochs_default_is_the_recipe_s_in_both_tools():
    import zoo

    from tuning.searches.config import SearchConfig
    from tuning.searches.preflight import resolve_epochs

    assert compare_cli._parse(["--max-params", "9"]).epochs is None  # CompareConfig: the recipe's
    assert SearchConfig().epochs is None
    assert resolve_epochs(SearchConfig(), 1000).epochs == zoo.Recipe().resolve(1000).epochs
    assert resolve_epochs(SearchConfig(epochs=3), 1000).epochs == 3


@pytest.mark.parametrize("tool, argv, abbreviation", [
    ("zoo-tune", ["--batch-size", "32"], "--batch-size"),  # once a full search at --batch-sizes 32
    ("zoo-tune", ["--max-trial", "1"], "--max-trial"),
    ("zoo-compare", ["--max-param", "9000"], "--max-param"),
    ("zoo-export", ["m.keras", "--model-nam", "m"], "--model-nam"),
    ("zoo-query", ["--model-nam", "digits", "status"], "--model-nam"),
])
def test_abbreviated_flags_are_refused(tool, argv, abbreviation, capsys):
    with pytest.raises(SystemExit) as exc:
        TOOLS[tool]().parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"unrecognized arguments: {abbreviation}" in err, err


def test_zoo_serve_refuses_abbreviations_too(capsys):
    from serving.server.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--model_config", "x"])
    assert "unrecognized arguments: --model_config" in capsys.readouterr().err


# Runs in a fresh interpreter (this session has TensorFlow loaded): each CLI's main() on each
# argv, its exit status and stderr, and whether TensorFlow or Keras had been imported by then.
WALK = r"""
import contextlib, io, json, sys
from importlib import import_module
results = []
for module, argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = import_module(module).main(argv)
        except SystemExit as exc:
            code = exc.code
    results.append({"code": code, "err": err.getvalue(),
                    "tf": "tensorflow" in sys.modules or "keras" in sys.modules})
print(json.dumps(results))
"""
TUNE, COMPARE, EXPORT = "tuning.searches.cli", "tuning.comparisons.cli", "serving.exporter.cli"
SERVE, QUERY = "serving.server.cli", "serving.client.cli"
# (module, argv with {d} for a scratch folder, what the error line says: the flag in its words)
MISTAKES = [
    (TUNE, ["--rules", "doubing"], "unknown rule 'doubing' in --rules"),
    (TUNE, ["--dataset", "npz:/nonexistent/x.npz"], "--dataset 'npz:/nonexistent/x.npz'"),
    (TUNE, ["--no-fill-budget", "--filters", "16", "32", "--max-params", "300"],
     "no model in the search space meets the budget"),
    # these three used to load TensorFlow first (3.5-6 s) and spoke the keywords ("filters: min ...")
    (TUNE, ["--filters", "64", "8"], "--filters: min 64 > max 8"),
    (TUNE, ["--dropouts", "1.5"], "--dropouts must be in [0, 1)"),
    (TUNE, ["--project", "made", "--epochs", "2"],
     "was made with other settings (--epochs: 99 -> 2); pass --overwrite"),
    (COMPARE, ["--rules", "doubing", "--max-params", "3000"], "unknown rule 'doubing' in --rules"),
    (COMPARE, ["--dataset", "npz:/nonexistent/x.npz", "--max-params", "3000"], "does not exist"),
    (COMPARE, ["--budgets", "100"], "budget 100 params is reachable by no rule"),
    (COMPARE, ["--max-params", "3000", "--downsample-every", "0"], "--downsample-every must be an int >= 1, got 0"),
    # "budgets lists a budget twice" after TensorFlow, in the old flag's word
    (COMPARE, ["--max-params", "8000,8000"], "--max-params lists a budget twice: 8000"),
    # used to warn, then compare at 8,000 *params*
    (COMPARE, ["--budget-kind", "macs", "--max-params", "8000"], "--budget-kind macs contradicts --max-params"),
    # used to train every run, then say "no paired runs against doubling yet"
    (COMPARE, ["--rules", "linear,constant", "--max-params", "8000"], "--rules must include doubling"),
    (EXPORT, ["{d}/m.keras", "--model-name", "m", "--export-dir", "{d}/out", "--version", "3"],
     "pass --overwrite to replace it"),
    (EXPORT, ["{d}", "--model-name", "m"], "is a folder (a SavedModel?)"),
    (EXPORT, ["{d}/m.keras", "--model-name", "m", "--signatures", "predict,foo"],
     "--signatures 'predict,foo'"),
    (EXPORT, ["{d}/m.keras", "--model-name", "a/b"], "--model-name: invalid model name 'a/b'"),
    (EXPORT, ["{d}/m.keras", "--model-name", "m", "--class-names", "cat"],
     "--class-names 'cat': name at least two classes"),
    (EXPORT, ["{d}/m.keras"], "--model-name is required"),
    # used to say "no version found" after TensorFlow loaded (3.3 s)
    (SERVE, ["--model_base_path", "/nonexistent"], "--model_base_path /nonexistent does not exist"),
    (SERVE, ["--port", "-1", "--model_base_path", "{d}"], "--port"),
    (QUERY, ["status"], "--model-name is required"),
]


def test_every_cli_s_usage_errors_name_the_flag_before_tensorflow_loads(tmp_path, subprocess_env):
    (tmp_path / "m.keras").write_bytes(b"")  # never loaded: every check comes first
    (tmp_path / "out" / "m" / "3").mkdir(parents=True)
    made = tmp_path / "runs" / "made"  # a zoo-tune project made with other settings
    made.mkdir(parents=True)
    from tuning.searches.config import SETTINGS_FILE, SearchConfig

    (made / SETTINGS_FILE).write_text(json.dumps(SearchConfig(epochs=99).settings()))
    runs = ["--directory", str(tmp_path / "runs")]
    cases = [(m, [a.format(d=tmp_path) for a in argv] + (runs if m in (TUNE, COMPARE) else []))
             for m, argv, _ in MISTAKES]
    out = subprocess.run([sys.executable, "-c", WALK, json.dumps(cases)], capture_output=True,
                         text=True, env=subprocess_env, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(results) == len(MISTAKES)
    for (module, argv, message), result in zip(MISTAKES, results):
        errors = [ln for ln in result["err"].splitlines() if ": error: " in ln]
        assert result["code"] == 2 and len(errors) == 1, (module, argv, result)
        assert message in errors[0], (module, argv, errors[0])
        assert not result["tf"], (module, argv, "TensorFlow was imported")
        # keyword spellings (max_params=, downsample_every) are the Python API's, not a CLI's
        assert not re.search(r"\b(max_params|downsample_every|overwrite=|budgets lists)\b", errors[0])
