"""One name per concept across zoo and tuning (the one bridge to serving is tests/test_import_graph.py's)."""
from pathlib import Path

import tuning
import zoo.budget
import zoo.costs

TUNING = Path(tuning.__file__).parent


def test_one_name_per_concept():
    assert tuning.BudgetError is zoo.budget.BudgetError  # one "budget cannot be met" error
    assert issubclass(tuning.SearchBudgetError, zoo.budget.BudgetError)
    assert issubclass(tuning.SearchBudgetError, tuning.SearchError)
    assert tuning.MeasuredCosts is not zoo.costs.Costs and not hasattr(tuning, "Costs")
    assert not (TUNING / "budgets.py").exists()  # zoo.budget fits widths; tuning.constraints checks
