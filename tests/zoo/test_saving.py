"""A `.keras` file from `zoo.build` loads in a new process with `zoo` imported, in either import
order, and through zoo-export; a file Keras cannot load is one clear line from zoo-export.

The loads run in fresh subprocesses: the test session has registered ZooModel long ago, which is
how the defect (a lazy `import zoo` that no longer registered it) went unseen.
"""
import subprocess
import sys
from pathlib import Path

import pytest

import zoo
from serving.exporter import cli as export_cli

VENV_BIN = Path(sys.executable).parent

LOAD = """
import sys
{imports}
from zoo import _keras_registration
m = keras.models.load_model(sys.argv[1])
assert "zoo.builders" not in sys.modules  # registering loads the model class alone
info = zoo.model_info(m)
assert zoo.model_info(keras.models.clone_model(m)) == info  # a clone of a loaded model keeps it too
print(type(m).__name__, info["rule"], info["filters"])
# the hook is gone after it fired, and keras keeps its own loader
assert _keras_registration._FINDER not in sys.meta_path
assert type(keras.__spec__.loader).__name__ != "_RegisteringLoader"
"""


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("saving") / "m.keras"
    zoo.build("doubling", input_shape=(8, 8, 1), depth=2, base_filters=4, seed=0).save(path)
    return path


@pytest.mark.parametrize("imports", ["import zoo, keras", "import keras, zoo"])
def test_keras_file_loads_in_a_fresh_process(keras_file, imports, subprocess_env):
    proc = subprocess.run([sys.executable, "-c", LOAD.format(imports=imports), str(keras_file)],
                          env=subprocess_env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ZooModel doubling [4, 4]"


def test_zoo_export_loads_a_zoo_keras_file_in_a_fresh_process(keras_file, tmp_path,
                                                               subprocess_env):
    proc = subprocess.run([str(VENV_BIN / "zoo-export"), str(keras_file), "--model-name", "x",
                           "--export-dir", str(tmp_path), "--force"],
                          env=subprocess_env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "x" / "1" / "saved_model.pb").is_file()


def test_zoo_export_reports_an_unloadable_file_in_one_line(tmp_path, capsys):
    import keras

    @keras.saving.register_keras_serializable(package="test_saving")
    class Twice(keras.layers.Layer):
        def call(self, x):
            return 2 * x

    inputs = keras.Input((4,), name="images")
    path = tmp_path / "custom.keras"
    keras.Model(inputs, keras.layers.Dense(2)(Twice()(inputs))).save(path)
    del keras.saving.get_custom_objects()["test_saving>Twice"]  # as in a process without it
    assert export_cli.main([str(path), "--model-name", "x", "--export-dir", str(tmp_path / "out"),
                            "--force"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 600 and "config" not in err, err
    assert err.startswith("zoo-export: error: cannot load model file") and "Could not locate class 'Twice'" in err


def test_import_zoo_still_imports_no_keras(subprocess_env):
    code = "import sys, zoo; zoo.plan('doubling'); print('keras' in sys.modules, 'tensorflow' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], env=subprocess_env, capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout.split() == ["False", "False"], proc.stderr


# TensorFlow's start-up lines (TF 2.21 prints them through absl before it is initialised, so no
# environment variable hides them all): with `zoo` imported first, none reach the user.
START_UP_LINES = ("absl::InitializeLog", "oneDNN", "cudart_stub", "cuda drivers", "cuInit",
                  "cpu_feature_guard", "I0000", "E0000", "W0000")


@pytest.mark.parametrize("code", [
    "import zoo, keras",
    "import zoo, tensorflow",
    "import zoo; zoo.datasets.load('digits').tf_data('train', batch_size=8)",
    # serving's deferred TensorFlow (serving/protos.py) runs the wrapped loader on first use
    "import zoo, serving.protos, tensorflow as tf; assert float(tf.reduce_sum(tf.ones(3))) == 3.0",
])
def test_zoo_imported_first_keeps_tensorflow_start_up_lines_out(code, subprocess_env):
    env = {k: v for k, v in subprocess_env.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "ZOO_TF_VERBOSE")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not [w for w in START_UP_LINES if w in proc.stderr], proc.stderr[-2000:]


def test_zoo_tf_verbose_still_shows_tensorflow_start_up_lines(subprocess_env):
    proc = subprocess.run([sys.executable, "-c", "import zoo, keras"], capture_output=True, text=True,
                          env={**subprocess_env, "ZOO_TF_VERBOSE": "1", "TF_CPP_MIN_LOG_LEVEL": "0"},
                          timeout=180)
    assert proc.returncode == 0 and "absl::InitializeLog" in proc.stderr, proc.stderr[-2000:]
