"""What the package imports at start-up: the client path must not load TensorFlow or Keras.

Each check runs in a fresh interpreter, since this test session has TensorFlow loaded already.
Timings are not asserted here; benchmarks/bench_startup.py measures them.
"""
from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("tensorflow", "tensorflow.python", "keras", "keras_tuner", "serving.client.grpc_client", "zoo.builders",
         "sklearn")


def _modules_after(code: str, env: dict[str, str]) -> dict[str, bool]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_serving_rest_client_and_query_cli_load_no_tensorflow(subprocess_env):
    loaded = _modules_after(
        "import serving, serving.client.cli, zoo.images\n"
        "from serving import RestClient, ClientError\n"
        "RestClient('http://127.0.0.1:9').close()\n"
        "zoo.images.to_model_input(__import__('numpy').zeros((1, 2, 2), 'uint8'))", subprocess_env)
    assert not any(loaded.values()), loaded


def test_grpc_client_is_loaded_on_first_use_without_tensorflow(subprocess_env):
    """TF Serving's protos import TensorFlow's protos, which used to run all of TensorFlow (seconds
    of zoo-query --server start-up): only the package's unexecuted module is bound now."""
    loaded = _modules_after("import serving, serving.client.cli, zoo.images\nserving.Client\n"
                            "from serving.client.grpc_client import Client\nClient('127.0.0.1:9').close()",
                            subprocess_env)
    assert loaded["serving.client.grpc_client"]
    assert not loaded["tensorflow.python"] and not loaded["keras"], loaded
    assert not loaded["zoo.builders"] and not loaded["keras_tuner"]


def test_tensorflow_imported_after_the_grpc_client_is_the_real_library(subprocess_env):
    code = ("import sys\nimport serving.client.grpc_client\nimport cnnzoo.env\ncnnzoo.env.setup_tensorflow()\n"
            "assert 'tensorflow.python' not in sys.modules\n"
            "placeholder = sys.modules['tensorflow']\n"
            "import tensorflow as tf\n"
            "import threading\n"  # two first uses at once: both wait for the one real import
            "sums = []\n"
            "threads = [threading.Thread(target=lambda: sums.append(float(tf.reduce_sum(tf.ones(3)))))"
            " for _ in range(2)]\n"
            "[t.start() for t in threads]\n[t.join(120) for t in threads]\n"
            "assert sums == [3.0, 3.0], sums\n"
            "from tensorflow.core.framework import tensor_pb2\n"
            "assert tf is placeholder and tf.__version__.startswith('2.')\n"
            "assert float(tf.reduce_sum(tf.constant([1.0, 2.5])).numpy()) == 3.5\n"
            "assert type(tf.make_tensor_proto([1.0])) is tensor_pb2.TensorProto\n"
            "assert 'saved_model' in dir(tf) and callable(tf.function)\n"
            "import keras\nassert keras.layers.Dense(2)(tf.zeros((1, 3))).shape == (1, 2)\n"
            "from serving.client.grpc_client import Client\nfrom serving import tensors\n"
            "assert tensors.to_numpy(tf.make_tensor_proto([[1, 2]]), 'x').tolist() == [[1, 2]]")
    loaded = _modules_after(code, subprocess_env)
    assert loaded["tensorflow.python"] and loaded["keras"]


def test_serving_export_is_the_function_after_its_module_is_imported(subprocess_env):
    code = ("import serving, serving.exporter.cli, serving.exporter.savedmodel, sys\n"
            "assert serving.export is sys.modules['serving.exporter.savedmodel'].export, serving.export\n"
            "assert type(sys.modules['serving']) is type(sys)  # a plain package module\n"
            "from serving import export, ExportedVersion\n"
            "assert export is serving.export and callable(export)\n"
            "try:\n    serving.nope\nexcept AttributeError as exc:\n    assert 'nope' in str(exc)\n"
            "else:\n    raise SystemExit('serving.nope did not raise')\n"
            "assert {'export', 'Client', 'RestClient', 'ClientError'} <= set(dir(serving))")
    _modules_after(code, subprocess_env)


def test_tuning_search_and_compare_stay_functions_after_their_packages_are_imported(subprocess_env):
    """The families live in tuning.searches and tuning.comparisons, not tuning.search and
    tuning.compare: importing a package of the function's name would replace the function."""
    code = ("import tuning, sys\n"
            "first = (tuning.search, tuning.compare)\n"
            "import tuning.searches.cli, tuning.comparisons.cli, tuning.searches.driver, tuning.comparisons.compare\n"
            "assert (tuning.search, tuning.compare) == first\n"
            "assert tuning.search is sys.modules['tuning.searches.driver'].search\n"
            "assert tuning.compare is sys.modules['tuning.comparisons.compare'].compare\n"
            "assert callable(tuning.search) and callable(tuning.compare)")
    _modules_after(code, subprocess_env)
