"""The four CLIs with the project's own flags (zoo-serve keeps TF Serving's) follow the one flag vocabulary written down in tuning/README.md: the same flag in
every tool the table names (and in no other), help text on every flag, old spellings that still
parse as the new flag with a deprecation warning; input mistakes are reported in flag names
before TensorFlow loads."""
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
    ("zoo-export", ["m.keras", "--base-dir", "d", "--name", "n"], ["m.keras", "--export-dir", "d", "--model-name", "n"]),
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


CHECK_BEFORE_TF = r"""
import json, sys
from tuning.searches import cli
from tuning.comparisons import cli as compare_cli
results = []
for main, argv in [
    (cli.main, ["--rules", "doubing", "--directory", sys.argv[1]]),
    (cli.main, ["--dataset", "npz:/nonexistent/x.npz", "--directory", sys.argv[1]]),
    (cli.main, ["--no-fill-budget", "--filters", "16", "32", "--max-params", "300", "--directory", sys.argv[1]]),
    (compare_cli.main, ["--rules", "doubing", "--max-params", "3000", "--directory", sys.argv[1]]),
    (compare_cli.main, ["--dataset", "npz:/nonexistent/x.npz", "--max-params", "3000", "--directory", sys.argv[1]]),
    (compare_cli.main, ["--budgets", "100", "--directory", sys.argv[1]]),
    (compare_cli.main, ["--max-params", "3000", "--downsample-every", "0", "--directory", sys.argv[1]]),
]:
    results.append(main(argv))
print(json.dumps({"codes": results, "tf": "tensorflow" in sys.modules, "keras": "keras" in sys.modules}))
"""


def test_input_mistakes_are_one_line_in_flag_names_before_tensorflow_loads(tmp_path, subprocess_env):
    out = subprocess.run([sys.executable, "-c", CHECK_BEFORE_TF, str(tmp_path)], capture_output=True,
                         text=True, env=subprocess_env, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"codes": [2] * 7, "tf": False, "keras": False}, (result, out.stderr)
    err = [ln for ln in out.stderr.splitlines() if ": error: " in ln]
    assert len(err) == 7, out.stderr
    assert "unknown rule 'doubing' in --rules" in err[0] and "does not exist" in err[1]
    assert "no model in the search space meets the budget" in err[2] and "--max-params 300" in err[2]
    assert "unknown rule 'doubing' in --rules" in err[3] and "does not exist" in err[4]
    assert "budget 100 params is reachable by no rule" in err[5]
    assert err[6] == "zoo-compare: error: --downsample-every must be an int >= 1, got 0"
    assert not any("_" in w and w.isidentifier() for ln in err for w in re.findall(r"\b\w+\b", ln)
                   if w in ("max_params", "downsample_every", "overwrite")), err


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


EXPORT_CHECKS = r"""
import json, os, sys
from serving.exporter import cli
d = sys.argv[1]
model = os.path.join(d, "m.keras")
open(model, "wb").close()  # never loaded: every check below comes first
os.makedirs(os.path.join(d, "out", "m", "3"))
codes = [cli.main(argv) for argv in [
    [model, "--model-name", "m", "--export-dir", os.path.join(d, "out"), "--version", "3"],
    [d, "--model-name", "m"],
    [model, "--model-name", "m", "--signatures", "predict,foo"],
    [model, "--model-name", "a/b"],
    [model, "--model-name", "m", "--class-names", "cat"],
    [model],
]]
print(json.dumps({"codes": codes, "tf": "tensorflow" in sys.modules, "keras": "keras" in sys.modules}))
"""


def test_zoo_export_usage_errors_name_the_flag_before_tensorflow_loads(tmp_path, subprocess_env):
    """Each used to take 2.6-5.7 s (TensorFlow first) and spoke export()'s keywords ("pass
    overwrite=True", "unknown signatures ['foo']"); a SavedModel folder got "does not exist"."""
    out = subprocess.run([sys.executable, "-c", EXPORT_CHECKS, str(tmp_path)], capture_output=True,
                         text=True, env=subprocess_env, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"codes": [2] * 6, "tf": False, "keras": False}
    err = [ln for ln in out.stderr.splitlines() if ln.startswith("zoo-export: error: ")]
    assert len(err) == 6, out.stderr
    assert "already exists" in err[0] and "pass --overwrite" in err[0]
    assert "is a folder (a SavedModel?)" in err[1]
    assert "--signatures 'predict,foo'" in err[2] and "(unknown: foo)" in err[2]
    assert err[3].startswith("zoo-export: error: --model-name: invalid model name 'a/b'")
    assert "--class-names 'cat': name at least two classes" in err[4]
    assert "--model-name is required" in err[5]
