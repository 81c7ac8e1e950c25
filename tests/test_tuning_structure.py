"""tuning's layout: serving is reached through one bridge (the export of winners), one name per
concept across zoo and tuning."""
import ast
from pathlib import Path

import tuning
import zoo.budget
import zoo.costs

TUNING = Path(tuning.__file__).parent


def _serving_imports(path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "serving":
            yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "serving":
                    yield a.name, []


def test_tuning_reaches_serving_only_through_the_export_bridge():
    found = {}
    for path in sorted(TUNING.glob("*.py")):
        for module, names in _serving_imports(path):
            # write_atomic is plumbing on its way to the base package below all three packages
            if (module, names) == ("serving.layout", ["write_atomic"]):
                continue
            found.setdefault(path.name, []).append(module)
    assert set(found) == {"export_winners.py"}, found


def test_one_name_per_concept():
    assert tuning.BudgetError is zoo.budget.BudgetError  # one "budget cannot be met" error
    assert issubclass(tuning.SearchBudgetError, zoo.budget.BudgetError)
    assert issubclass(tuning.SearchBudgetError, tuning.SearchError)
    assert tuning.MeasuredCosts is not zoo.costs.Costs and not hasattr(tuning, "Costs")
    assert not (TUNING / "budgets.py").exists()  # zoo.budget fits widths; tuning.constraints checks
