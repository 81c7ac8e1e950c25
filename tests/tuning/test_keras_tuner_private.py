"""Every private keras-tuner hook tuning relies on (listed in tuning/_keras_tuner.py) is still there
and still used by keras-tuner the way tuning's overrides assume; an upgrade that moves one fails
here, by name."""
import inspect

import keras_tuner as kt
import pytest

from tuning import _keras_tuner as ktp


def test_the_installed_keras_tuner_has_everything_listed():
    assert ktp.check_installed() == []


def test_the_list_names_every_private_hook_tuning_uses():
    """Every `self._x` tuning.searches.oracles uses on keras-tuner's Oracle and every Tuner method
    tuning.searches.tuners overrides is in the list (a new one must be added there, and tested here)."""
    import re

    from tuning.searches import oracles

    from tuning.searches import tuners

    ours = {"_rebound", "_untried", "_covering_values"}  # tuning's own helpers
    used = set(re.findall(r"self\.(_[a-z][a-z_]*)", inspect.getsource(oracles))) - ours
    used |= set(re.findall(r"super\(\)\.(_[a-z][a-z_]*)", inspect.getsource(oracles)))
    assert used <= set(ktp.ORACLE_HOOKS), sorted(used - set(ktp.ORACLE_HOOKS))
    overridden = {name for name, _ in inspect.getmembers(tuners._ZooTunerMixin, inspect.isfunction)
                  if name.startswith("_") and not name.startswith("__") and hasattr(kt.Tuner, name)}
    assert overridden <= set(ktp.TUNER_METHODS), sorted(overridden - set(ktp.TUNER_METHODS))


@pytest.mark.parametrize("name", ktp.ORACLE_METHODS)
def test_oracle_method_exists(name):
    assert callable(getattr(kt.Oracle, name, None)), f"keras_tuner.Oracle.{name} is gone"


@pytest.mark.parametrize("caller, hook", [
    ("_random_values", "_max_collisions"),  # tuning raises the draw limit; the draw must read it
    ("_random_values", "_duplicate"),
    ("_duplicate", "_compute_values_hash"),  # tuning's network key replaces the value hash
    ("_save_trial", "_get_trial_dir"),
    ("reload", "_retry_queue"),  # tuning drops finished trials from the queue after a reload
    ("reload", "_project_dir"),
    ("save", "_get_oracle_fname"),
])
def test_keras_tuner_still_uses_the_hook_where_tuning_overrides_it(caller, hook):
    assert hook in inspect.getsource(getattr(kt.Oracle, caller)), f"Oracle.{caller} no longer uses {hook}"


@pytest.mark.parametrize("name, kind", list(ktp.ORACLE_ATTRIBUTES.items()))
def test_oracle_attribute_exists(tmp_path, name, kind):
    oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective("x", "max"), max_trials=1)
    tuner = kt.Tuner(oracle, lambda hp: None, directory=str(tmp_path), project_name="p")
    assert isinstance(getattr(tuner.oracle, name, None), kind), f"Oracle.{name} is gone or changed"
    if name == "_project_dir":
        assert getattr(tuner.oracle, name) == str(tmp_path / "p")


@pytest.mark.parametrize("name", ktp.TUNER_METHODS)
def test_tuner_method_exists_and_run_trial_calls_it(name):
    assert callable(getattr(kt.Tuner, name, None)), f"keras_tuner.Tuner.{name} is gone"
    # tuning.searches.tuners overrides it to seed each execution; run_trial must go through it
    assert name in inspect.getsource(kt.Tuner.run_trial)


def test_conditions_sent_to_a_chief_print_nothing(capsys):
    """keras-tuner's Parent.to_proto printed its first value: 26 stray lines with --workers 2."""
    from keras_tuner.src.engine import conditions

    proto = conditions.Parent("rule", ["doubling"]).to_proto()
    assert proto.parent.name == "rule"
    assert capsys.readouterr().out == ""
