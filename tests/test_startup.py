"""What the package imports at start-up: the client path must not load TensorFlow or Keras.

Each check runs in a fresh interpreter, since this test session has TensorFlow loaded already.
Timings are not asserted here; benchmarks/bench_startup.py measures them.
"""
from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("tensorflow", "keras", "keras_tuner", "serving.client", "zoo.builders", "sklearn")


def _modules_after(code: str, env: dict[str, str]) -> dict[str, bool]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_serving_rest_client_and_query_cli_load_no_tensorflow(subprocess_env):
    loaded = _modules_after(
        "import serving, serving.query_cli, zoo.images\n"
        "from serving import RestClient, ClientError\n"
        "RestClient('http://127.0.0.1:9').close()\n"
        "zoo.images.to_model_input(__import__('numpy').zeros((1, 2, 2), 'uint8'))", subprocess_env)
    assert not any(loaded.values()), loaded


def test_grpc_client_is_loaded_on_first_use(subprocess_env):
    loaded = _modules_after("import serving\nserving.Client", subprocess_env)
    # TF Serving's protos import TensorFlow (which registers keras); zoo's Keras builders stay out
    assert loaded["serving.client"] and loaded["tensorflow"]
    assert not loaded["zoo.builders"] and not loaded["keras_tuner"]


def test_serving_export_is_the_function_after_its_module_is_imported(subprocess_env):
    code = ("import serving, serving.export_cli, sys\n"
            "assert serving.export is sys.modules['serving.export'].export, serving.export\n"
            "from serving import export, ExportedVersion\n"
            "assert export is serving.export and callable(export)\n"
            "try:\n    serving.nope\nexcept AttributeError as exc:\n    assert 'nope' in str(exc)\n"
            "else:\n    raise SystemExit('serving.nope did not raise')\n"
            "assert {'export', 'Client', 'RestClient', 'ClientError'} <= set(dir(serving))")
    _modules_after(code, subprocess_env)
