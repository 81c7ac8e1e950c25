"""serving.export (serving/exporter/savedmodel.py): TF Serving layout, signatures checked in a
fresh plain-TensorFlow process, warmup, models.config, bad inputs, a SIGKILLed export, and the
zoo-export CLI.

One small digits model is trained and exported once per module; everything else reuses it.
"""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from google.protobuf import text_format
from PIL import Image
from tensorflow_serving.config import model_server_config_pb2

import zoo
from serving.exporter import batching_parameters
from serving.exporter import cli as export_cli
from serving.exporter import model_server_config
from serving.config_files import parse_batching_parameters
from serving.exporter.savedmodel import ExportedVersion, export
from serving.exporter.versions import version_dirs

VENV_BIN = Path(sys.executable).parent
CLASS_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SIGNATURE_METHODS = {
    "serving_default": "tensorflow/serving/predict",
    "serving_bytes": "tensorflow/serving/predict",
    "classify": "tensorflow/serving/classify",
    "regress": "tensorflow/serving/regress",
}


@pytest.fixture(scope="module")
def trained(digits):
    model = zoo.build("doubling", input_shape=(8, 8, 1), num_classes=10, depth=2, base_filters=8,
                      seed=0)
    zoo.compile_classifier(model, learning_rate=3e-3)
    # Training moves BatchNorm's moving statistics away from their initial values, so an export
    # that wrongly ran the model in training mode would disagree with Keras below.
    model.fit(digits.x_train, digits.y_train, epochs=2, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def exported(trained, digits, tmp_path_factory):
    base = tmp_path_factory.mktemp("export")
    ev = export(trained, base, name="digits", class_names=CLASS_NAMES,
                metadata={"metrics": {"accuracy": 0.5}, "hyperparameters": {"lr": np.float32(3e-3)}},
                warmup_samples=digits.x_test[:3])
    return base, ev


# A plain-TensorFlow client. `import tensorflow` itself imports keras when it is installed, so
# keras (and this project's packages) are made unimportable: the SavedModel must not need them.
FRESH_SCRIPT = textwrap.dedent("""
    import importlib.machinery, json, sys

    class Blocked:  # finds blocked names first and fails to load them (TF tolerates a missing keras)
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("keras", "tf_keras", "zoo", "serving", "tuning"):
                return importlib.machinery.ModuleSpec(name, self)
        def create_module(self, spec):
            raise ImportError(f"{spec.name} is blocked in this process")
        def exec_module(self, module):
            pass
    sys.meta_path.insert(0, Blocked())

    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    cfg = json.load(open(sys.argv[1]))
    def arr(t):  # string tensors come back as object arrays, which np.load refuses
        a = t.numpy()
        return a.astype("S") if a.dtype == object else a
    loaded = tf.saved_model.load(cfg["model_dir"])
    sig = loaded.signatures
    x = np.load(cfg["x"])
    out = {}
    r = sig["serving_default"](images=tf.constant(x))
    out.update({"default_" + k: arr(v) for k, v in r.items()})
    pngs = [open(p, "rb").read() for p in cfg["pngs"]]
    r = sig["serving_bytes"](images_bytes=tf.constant(pngs))
    out.update({"bytes_" + k: arr(v) for k, v in r.items()})
    odd = [open(p, "rb").read() for p in cfg["odd_images"]]  # RGB 16x16 PNG and a JPEG
    out["odd_probabilities"] = sig["serving_bytes"](images_bytes=tf.constant(odd))["probabilities"].numpy()
    examples = [tf.train.Example(features=tf.train.Features(feature={"images": tf.train.Feature(
        float_list=tf.train.FloatList(value=img.reshape(-1)))})).SerializeToString() for img in x]
    r = sig["classify"](inputs=tf.constant(examples))
    out.update({"classify_" + k: arr(v) for k, v in r.items()})
    out["regress_outputs"] = sig["regress"](inputs=tf.constant(examples))["outputs"].numpy()
    kinds = []
    for record in tf.data.TFRecordDataset(cfg["warmup"]):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        kind = log.WhichOneof("log_type")
        request = getattr(log, kind).request
        key = request.model_spec.signature_name
        if kind == "predict_log":
            inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
            n = len(sig[key](**inputs)["probabilities"])
        else:
            ex = [e.SerializeToString() for e in request.input.example_list.examples]
            n = len(list(sig[key](inputs=tf.constant(ex)).values())[0])
        kinds.append([kind, key, n])
    out["warmup"] = np.array(json.dumps(kinds))
    leaked = sorted({m.split(".")[0] for m in sys.modules} & {"keras", "zoo", "serving", "tuning"})
    out["leaked"] = np.array(json.dumps(leaked))
    np.savez(cfg["out"], **out)
""")


def _png(image: np.ndarray, mode: str = "L", fmt: str = "PNG") -> bytes:
    pixels = np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels.squeeze(-1) if mode == "L" else pixels, mode=mode).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def fresh(exported, digits, tmp_path_factory, subprocess_env):
    """Run FRESH_SCRIPT once in a new interpreter and return its outputs (+ the inputs used)."""
    _, ev = exported
    work = tmp_path_factory.mktemp("fresh")
    x = digits.x_test[:32]
    np.save(work / "x.npy", x)
    pngs = []
    for i, image in enumerate(x):  # encoded with Pillow, independently of the exporter
        (work / f"{i}.png").write_bytes(_png(image))
        pngs.append(str(work / f"{i}.png"))
    rgb = np.repeat(np.kron(x[0], np.ones((2, 2, 1))), 3, axis=-1)  # 16x16x3
    (work / "rgb.png").write_bytes(_png(rgb, mode="RGB"))
    (work / "rgb.jpg").write_bytes(_png(rgb, mode="RGB", fmt="JPEG"))
    cfg = {"model_dir": str(ev.path), "x": str(work / "x.npy"), "pngs": pngs,
           "odd_images": [str(work / "rgb.png"), str(work / "rgb.jpg")],
           "warmup": str(ev.path / "assets.extra" / "tf_serving_warmup_requests"),
           "out": str(work / "out.npz")}
    (work / "cfg.json").write_text(json.dumps(cfg))
    (work / "client.py").write_text(FRESH_SCRIPT)
    proc = subprocess.run([sys.executable, str(work / "client.py"), str(work / "cfg.json")],
                          cwd=work, env=subprocess_env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return x, dict(np.load(work / "out.npz"))


def test_layout_metadata_and_method_names(exported, trained):
    from tensorflow.core.protobuf import saved_model_pb2

    base, ev = exported
    assert isinstance(ev, ExportedVersion) and ev.name == "digits" and ev.version == 1
    assert ev.path == (base / "digits" / "1").resolve()
    assert sorted(p.name for p in (base / "digits").iterdir()) == ["1"]  # no temp folder left
    assert (ev.path / "saved_model.pb").is_file() and (ev.path / "variables").is_dir()
    info = json.loads((ev.path / "assets.extra" / "zoo.json").read_text())
    assert info["rule"] == "doubling" and info["block"] == "plain"
    assert info["filters"] == zoo.model_info(trained)["filters"]
    assert info["class_names"] == CLASS_NAMES and info["input_shape"] == [8, 8, 1]
    assert info["metrics"] == {"accuracy": 0.5} and info["hyperparameters"]["lr"] == pytest.approx(3e-3)
    assert info["version"] == 1 and info["package_version"] and info["created_at"].endswith("+00:00")
    saved = saved_model_pb2.SavedModel.FromString((ev.path / "saved_model.pb").read_bytes())
    sigdefs = saved.meta_graphs[0].signature_def
    assert {k: sigdefs[k].method_name for k in SIGNATURE_METHODS} == SIGNATURE_METHODS
    assert list(sigdefs["serving_default"].inputs) == ["images"]
    assert sorted(sigdefs["serving_default"].outputs) == ["class_ids", "classes", "probabilities"]
    assert list(sigdefs["serving_bytes"].inputs) == ["images_bytes"]
    assert sorted(sigdefs["classify"].outputs) == ["classes", "scores"]
    assert list(sigdefs["regress"].outputs) == ["outputs"]


def test_only_standard_tensorflow_ops(exported):
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.framework import op_def_registry

    _, ev = exported
    graph = saved_model_pb2.SavedModel.FromString(
        (ev.path / "saved_model.pb").read_bytes()).meta_graphs[0].graph_def
    functions = {f.signature.name: f for f in graph.library.function}
    nodes = list(graph.node) + [n for f in functions.values() for n in f.node_def]
    ops = {n.op for n in nodes}
    assert not ops & {"PyFunc", "PyFuncStateless", "EagerPyFunc"}
    # Every op is a registered TF kernel op or a call of a function inside the SavedModel.
    unknown = {op for op in ops if op not in functions and op_def_registry.get(op) is None}
    assert not unknown
    called = {n.attr["f"].func.name for n in nodes if n.op in ("StatefulPartitionedCall", "PartitionedCall")}
    assert called and called <= set(functions)
    assert {"ParseExampleV2", "DecodeImage", "Conv2D"} <= ops  # the graphs really are all there


def test_fresh_tensorflow_process_matches_keras(fresh, trained):
    x, out = fresh
    expected = trained.predict(x, verbose=0)
    assert json.loads(str(out["leaked"])) == []  # loaded and ran with keras/zoo/serving blocked
    assert out["default_probabilities"].dtype == np.float32
    assert np.max(np.abs(out["default_probabilities"] - expected)) <= 1e-5
    ids = out["default_class_ids"]
    assert ids.dtype == np.int64 and (ids == expected.argmax(-1)).all()
    assert [c.decode() for c in out["default_classes"]] == [CLASS_NAMES[i] for i in ids]


def test_bytes_signature_matches_on_png(fresh, trained):
    x, out = fresh
    quantized = np.rint(x * 255) / 255  # what survives 8-bit PNG encoding
    expected = trained.predict(quantized.astype(np.float32), verbose=0)
    assert np.max(np.abs(out["bytes_probabilities"] - expected)) <= 1e-5
    assert (out["bytes_class_ids"] == expected.argmax(-1)).all()
    # RGB 16x16 PNG and JPEG are converted to 1 channel and resized to 8x8 inside the graph.
    odd = out["odd_probabilities"]
    assert odd.shape == (2, 10) and np.allclose(odd.sum(-1), 1, atol=1e-5)


def test_classify_and_regress_signatures(fresh):
    _, out = fresh
    assert np.max(np.abs(out["classify_scores"] - out["default_probabilities"])) <= 1e-6
    assert out["classify_classes"].shape == (32, 10)
    assert [c.decode() for c in out["classify_classes"][5]] == CLASS_NAMES
    assert np.allclose(out["regress_outputs"], out["default_probabilities"].max(-1), atol=1e-6)


def test_warmup_records_parse_and_run(fresh):
    _, out = fresh
    kinds = json.loads(str(out["warmup"]))
    assert sorted(k[:2] for k in kinds) == [["classify_log", "classify"],
                                            ["predict_log", "serving_bytes"],
                                            ["predict_log", "serving_default"],
                                            ["regress_log", "regress"]]
    assert all(n == 3 for _, _, n in kinds)  # the 3 warmup_samples given


def test_saved_model_cli_lists_signatures(exported, subprocess_env):
    _, ev = exported
    proc = subprocess.run([str(VENV_BIN / "saved_model_cli"), "show", "--all", "--dir", str(ev.path)],
                          env=subprocess_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for key, method in SIGNATURE_METHODS.items():
        block = proc.stdout.split(f"signature_def['{key}']:", 1)[1].split("signature_def[", 1)[0]
        assert f"Method name is: {method}" in block
    assert "inputs['images_bytes']" in proc.stdout and "outputs['probabilities']" in proc.stdout


def test_models_config_and_batching_file(exported, trained, tmp_path):
    base, ev = exported
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((base / "models.config").read_text(), config)
    (entry,) = config.model_config_list.config
    assert entry.name == "digits" and entry.model_platform == "tensorflow"
    assert entry.base_path == str(ev.path.parent) and os.path.isabs(entry.base_path)
    assert entry.model_version_policy.latest.num_versions == 1
    params = parse_batching_parameters((base / "batching_parameters.txt").read_text())
    assert params.max_batch_size == 32 and params.num_batch_threads == 1 and params.batch_timeout_micros == 0

    # A second model with a relative base_path joins the same file; the first entry is kept.
    other = export(trained, base, name="other", base_path_style="relative", signatures=["predict"])
    raw = model_server_config.read_model_server_config(base / "models.config", resolve_relative=False)
    assert model_server_config.model_names(raw) == ["digits", "other"]
    assert raw.model_config_list.config[1].base_path == "other"
    resolved = model_server_config.read_model_server_config(base / "models.config")
    assert resolved.model_config_list.config[1].base_path == str(other.path.parent)

    bad = tmp_path / "bad.config"
    bad.write_text("model_config_list { config { name: 'x' base_pth: '/a' } }")
    with pytest.raises(ValueError, match="bad.config.*base_pth"):
        model_server_config.read_model_server_config(bad)
    bad.write_text("model_config_list { config { name: 'x' base_path: '/a' model_platform: 'onnx' } }")
    with pytest.raises(ValueError, match="model_platform must be 'tensorflow', got 'onnx'"):
        model_server_config.read_model_server_config(bad)
    with pytest.raises(ValueError, match="exclusive"):
        model_server_config.update_model_config(tmp_path, "x", relative=True, base_path_prefix="/models")
    prefixed = model_server_config.update_model_config(tmp_path, "x", base_path_prefix="/models")
    assert "base_path: \"/models/x\"" in prefixed.read_text()


@pytest.mark.parametrize("text, message", [
    ("model_config_list { config { name: 'x' base_path: '/a' } config { name: 'x' base_path: '/b' } }",
     "'x' is configured twice"),
    ("model_config_list { config { name: 'x' } }", "'x': base_path must be a non-empty path"),
    ("model_config_list { config { name: 'a/b' base_path: '/a' } }", "invalid model name"),
    ("custom_model_config { }", "custom_model_config is not supported"),
])
def test_read_model_server_config_rejects(text, message, tmp_path):
    path = tmp_path / "models.config"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        model_server_config.read_model_server_config(path)


def test_model_config_helpers_validate(trained, tmp_path):
    with pytest.raises(ValueError, match="cannot read model config file"):
        model_server_config.read_model_server_config(tmp_path / "missing.config")
    with pytest.raises(TypeError, match="path must be a non-empty path"):
        model_server_config.read_model_server_config(None)
    with pytest.raises(TypeError, match="config must be a ModelServerConfig"):
        model_server_config.write_model_server_config(tmp_path / "x.config", "model_config_list {}")
    with pytest.raises(ValueError, match="num_versions must be a positive int"):
        model_server_config.update_model_config(tmp_path, "x", num_versions=0)
    with pytest.raises(TypeError, match="relative must be a bool"):
        model_server_config.update_model_config(tmp_path, "x", relative="yes")
    with pytest.raises(ValueError, match="invalid model name"):
        model_server_config.update_model_config(tmp_path, "../x")
    with pytest.raises(TypeError, match="BatchingParameters"):
        batching_parameters.batching_parameters_text({"max_batch_size": 8})
    with pytest.raises(TypeError, match="model_dir must be a path"):
        version_dirs(3)
    # A broken models.config stops an export before any version is written.
    (tmp_path / "models.config").write_text("model_config_list { oops }")
    with pytest.raises(ValueError, match="invalid model config file"):
        export(trained, tmp_path, name="m", signatures=["predict"])
    assert not (tmp_path / "m").exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "models.config"]


def test_rgb_model_bytes_signature(tmp_path):
    import tensorflow as tf

    inputs = keras.Input((12, 12, 3), name="images")
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(x)))
    ev = export(model, tmp_path, name="rgb", signatures=("predict", "bytes"), trained=True)  # layout only
    rng = np.random.default_rng(0)
    same = np.rint(rng.uniform(size=(12, 12, 3)) * 255) / 255
    bigger = rng.uniform(size=(30, 20, 3))
    gray = rng.uniform(size=(12, 12, 1))
    blobs = [_png(same, mode="RGB"), _png(bigger, mode="RGB", fmt="JPEG"), _png(gray)]
    out = tf.saved_model.load(str(ev.path)).signatures["serving_bytes"](images_bytes=tf.constant(blobs))
    probs = out["probabilities"].numpy()
    assert probs.shape == (3, 3) and np.allclose(probs.sum(-1), 1, atol=1e-5)
    expected = model.predict(np.stack([same, np.repeat(np.rint(gray * 255) / 255, 3, -1)]).astype(
        np.float32), verbose=0)
    assert np.max(np.abs(probs[[0, 2]] - expected)) <= 1e-5  # gray PNGs are replicated to RGB
    assert [c.decode() for c in out["classes"].numpy()] == [str(i) for i in out["class_ids"].numpy()]


def test_next_version_and_overwrite(trained, tmp_path):
    first = export(trained, tmp_path, name="m", signatures=("predict",), update_config=False)
    second = export(trained, tmp_path, name="m", signatures=("predict",), update_config=False)
    assert (first.version, second.version) == (1, 2)
    assert not (tmp_path / "models.config").exists()
    stamp = (second.path / "saved_model.pb").stat().st_ino
    with pytest.raises(ValueError, match="version 2 of model 'm' already exists.*overwrite=True"):
        export(trained, tmp_path, name="m", version=2, signatures=("predict",))
    replaced = export(trained, tmp_path, name="m", version="2", overwrite=True,
                      metadata={"metrics": {"accuracy": 0.9}}, signatures=("predict",))
    assert replaced.version == 2 and (replaced.path / "saved_model.pb").stat().st_ino != stamp
    assert json.loads((replaced.path / "assets.extra/zoo.json").read_text())["metrics"]["accuracy"] == 0.9
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1", "2"]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no lock file left behind


def test_exporters_serialise_on_a_lock_of_the_base_folder(tmp_path):
    """The lock that orders version numbering between exporting processes is an flock on the base
    folder (it used to be a .zoo-export.lock file left in every export folder): another process
    cannot take it while an export holds it, and can once it is released."""
    import subprocess
    import sys

    from serving.exporter.savedmodel import _locked

    probe = ("import fcntl, os, sys\n"
             "fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)\n"
             "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept BlockingIOError:\n    sys.exit(3)\n")

    def other_process_gets_it() -> bool:
        code = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], timeout=60).returncode
        assert code in (0, 3)
        return code == 0

    with _locked(tmp_path):
        assert not other_process_gets_it()
    assert other_process_gets_it()
    assert list(tmp_path.iterdir()) == []


def _bad_cases(model_1d, model_2ch):
    return [
        (dict(model=model_1d), ValueError, "rank 4"),
        (dict(model="not a model"), TypeError, "keras.Model"),
        (dict(model=keras.Sequential([keras.layers.Dense(3)])), ValueError, "no defined input"),
        (dict(name="a/b"), ValueError, "invalid model name"),
        (dict(name="../up"), ValueError, "invalid model name"),
        (dict(name="sp ace"), ValueError, "invalid model name"),
        (dict(version=-1), ValueError, "invalid version -1"),
        (dict(version=1.5), ValueError, "invalid version 1.5"),
        (dict(version="two"), ValueError, "invalid version 'two'"),
        (dict(class_names=["a", "b"]), ValueError, "class_names has 2 names but the model outputs 10"),
        (dict(class_names="0123456789"), TypeError, "class_names must be a list"),
        (dict(signatures=("predict", "segment")), ValueError, r"unknown signatures \['segment'\]; valid"),
        (dict(signatures=("classify",)), ValueError, "must include 'predict'"),
        (dict(signatures="predict"), TypeError, "sequence of names"),
        (dict(model=model_2ch), ValueError, "'bytes' signature needs"),
        (dict(warmup_samples=np.zeros((2, 4, 4, 1))), ValueError, r"shape \[N, 8, 8, 1\]"),
        (dict(warmup_samples=np.full((1, 8, 8, 1), 2.0)), ValueError, r"scaled to \[0, 1\]"),
        (dict(metadata={"when": object()}), TypeError, "JSON-serializable"),
        (dict(metadata=[1, 2]), TypeError, "metadata must be a dict"),
        (dict(base_path_style="weird"), ValueError, "base_path_style must be one of"),
    ]


def test_bad_inputs_raise_and_write_nothing(trained, tmp_path):
    flat = keras.Input((64,), name="images")
    model_1d = keras.Model(flat, keras.layers.Dense(10, activation="softmax")(flat))
    two = keras.Input((8, 8, 2), name="images")
    model_2ch = keras.Model(two, keras.layers.Dense(10, activation="softmax")(
        keras.layers.Flatten()(two)))
    base = tmp_path / "models"
    for overrides, error, message in _bad_cases(model_1d, model_2ch):
        kwargs = dict(model=trained, base_dir=base, name="ok")
        kwargs.update(overrides)
        with pytest.raises(error, match=message):
            export(**kwargs)
        assert not base.exists(), overrides  # validation happens before anything is written

    # Unwritable base dirs: below a regular file, and (when not root) a read-only folder.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for bad_dir in (blocker, blocker / "sub"):
        with pytest.raises(ValueError, match="not writable.*not a directory"):
            export(trained, bad_dir, name="ok")
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ValueError, match="not writable"):
            export(trained, locked / "models", name="ok")
    with pytest.raises(TypeError, match="missing required argument 'name'"):
        export(trained, base)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"] + (["locked"] if os.geteuid() else [])


KILL_SCRIPT = textwrap.dedent("""
    import sys, time, zoo
    from serving.exporter import _signatures as export_signatures
    from serving.exporter.savedmodel import export

    real_save = export_signatures.save
    def slow_save(*args, **kwargs):  # a slow disk: the kill lands after writing, before the rename
        real_save(*args, **kwargs)
        print("written", flush=True)
        time.sleep(600)
    export_signatures.save = slow_save
    model = zoo.build("doubling", input_shape=(8, 8, 1), num_classes=10, depth=2, base_filters=4)
    export(model, sys.argv[1], name="victim")
""")


def test_killed_export_leaves_no_version_folder(trained, tmp_path, subprocess_env):
    base = tmp_path / "models"
    model_dir = base / "victim"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(base)], env=subprocess_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line == "written", proc.stderr.read()[-2000:] if proc.poll() is not None else line
        (temp,) = model_dir.iterdir()
        assert (temp / "saved_model.pb").is_file()  # the kill interrupts a real, mostly-done export
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert version_dirs(model_dir) == {}
    assert [p.name for p in model_dir.iterdir()] == [temp.name]
    assert temp.name.startswith(".tmp-") and not temp.name.isdigit()  # ignored by servers
    assert not (base / "models.config").exists()  # the config never named a missing model
    # The next export removes the dead process's temp folder.
    ev = export(trained, base, name="victim", signatures=("predict",))
    assert ev.version == 1 and sorted(p.name for p in model_dir.iterdir()) == ["1"]


def test_cli_exports_a_keras_file(trained, tmp_path, capsys):
    model_file = tmp_path / "m.keras"
    trained.save(model_file)
    meta = tmp_path / "meta.json"
    # A .keras round trip keeps the zoo structure (layer names) but not the rule: the metadata
    # names the rule, and cannot override what the model itself shows.
    meta.write_text(json.dumps({"metrics": {"accuracy": 0.75}, "rule": "doubling", "filters": [8, 16],
                                "block": "residual"}))
    code = export_cli.main([str(model_file), "--export-dir", str(tmp_path / "out"), "--model-name", "cli",
                            "--version", "3", "--class-names", ",".join(CLASS_NAMES),
                            "--metadata", str(meta), "--signatures", "predict,classify"])
    assert code == 0
    assert "exported cli version 3 to" in capsys.readouterr().out
    version_dir = tmp_path / "out" / "cli" / "3"
    info = json.loads((version_dir / "assets.extra" / "zoo.json").read_text())
    assert info["class_names"] == CLASS_NAMES and info["metrics"] == {"accuracy": 0.75}
    assert info["rule"] == "doubling" and info["filters"] == [8, 8] and info["block"] == "plain"
    assert set(info["signatures"]) == {"serving_default", "classify", "regress"}
    assert list(version_dirs(tmp_path / "out" / "cli")) == [3]


@pytest.mark.parametrize("argv, message", [
    (["missing.keras", "--model-name", "x"], "does not exist"),
    (["{model}", "--model-name", "a/b"], "invalid model name"),
    (["{model}", "--model-name", "x", "--version", "-3"], "invalid version"),
    (["{model}", "--model-name", "x", "--class-names", "a,b"], "--class-names has 2 names"),
    (["{model}", "--model-name", "x", "--signatures", "predict,nope"], "--signatures 'predict,nope': a "
     "comma-separated subset of predict,classify,bytes that includes predict (unknown: nope)"),
    (["{folder}", "--model-name", "x"], "is a folder (a SavedModel?)"),
    (["{model}"], "--model-name is required"),
    (["{model}", "--model-name", "x", "--metadata", "{model}"], "not valid JSON"),
])
def test_cli_bad_input_exits_2(argv, message, trained, tmp_path, capsys):
    model_file = tmp_path / "m.keras"
    if "{model}" in argv:
        trained.save(model_file)
    argv = [a.replace("{model}", str(model_file)).replace("{folder}", str(tmp_path)) for a in argv]
    assert export_cli.main([*argv, "--export-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo-export: error:") and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_cli_console_script_usage_errors(subprocess_env, tmp_path):
    proc = subprocess.run([str(VENV_BIN / "zoo-export"), str(tmp_path / "nope.keras"), "--model-name", "x"],
                          env=subprocess_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "zoo-export: error: MODEL.keras" in proc.stderr and "does not exist" in proc.stderr
    proc = subprocess.run([str(VENV_BIN / "zoo-export")], env=subprocess_env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "required" in proc.stderr


def test_committed_example_is_servable():
    """saved_models/ ships one small trained model and a config that finds it from any clone."""
    root = Path(__file__).resolve().parents[3] / "saved_models"
    config = model_server_config.read_model_server_config(root / "models.config")
    (entry,) = config.model_config_list.config
    assert entry.name == "digits" and Path(entry.base_path) == root / "digits"
    assert list(version_dirs(root / "digits")) == [1]
    version = root / "digits" / "1"
    size = sum(p.stat().st_size for p in version.rglob("*") if p.is_file())
    assert size < 1_000_000
    info = json.loads((version / "assets.extra" / "zoo.json").read_text())
    assert info["class_names"] == [str(i) for i in range(10)] and info["rule"] == "doubling"
    assert info["metrics"]["test_accuracy"] >= 0.9
    parse_batching_parameters((root / "batching_parameters.txt").read_text())


def test_export_warns_for_a_model_that_was_never_trained(trained, tmp_path):
    """The serving tour exported an untrained model, which then answered ~0.10 for every class."""
    import warnings

    from serving.exporter.savedmodel import UntrainedModelWarning

    fresh = zoo.build("doubling", input_shape=(8, 8, 1), num_classes=10, depth=2, base_filters=4)
    with pytest.warns(UntrainedModelWarning, match="no optimizer"):
        export(fresh, tmp_path, name="fresh", signatures=["predict"])
    zoo.compile_classifier(fresh)
    with pytest.warns(UntrainedModelWarning, match="iterations == 0"):
        export(fresh, tmp_path, name="fresh", signatures=["predict"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedModelWarning)
        export(trained, tmp_path, name="trained", signatures=["predict"])
        export(fresh, tmp_path, name="vouched", signatures=["predict"], trained=True)  # e.g. checkpoint weights
    with pytest.raises(TypeError, match="trained must be None"):
        export(trained, tmp_path, name="x", trained="yes")


def test_cli_refuses_a_model_that_was_never_trained_without_force(tmp_path, capsys):
    fresh = zoo.build("doubling", input_shape=(8, 8, 1), num_classes=10, depth=2, base_filters=4)
    zoo.compile_classifier(fresh)
    fresh.save(tmp_path / "fresh.keras")
    argv = [str(tmp_path / "fresh.keras"), "--export-dir", str(tmp_path / "out"), "--model-name", "fresh",
            "--signatures", "predict"]
    assert export_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo-export: error:") and "shows no sign of training" in err and "--force" in err
    assert not (tmp_path / "out").exists()
    assert export_cli.main([*argv, "--force"]) == 0
    assert list(version_dirs(tmp_path / "out" / "fresh")) == [1]


def test_a_logits_model_is_served_as_probabilities_and_another_head_is_refused(trained, digits,
                                                                                tmp_path):
    """A zoo model built with classifier_activation=None outputs logits: its export applies the
    softmax, so it answers what its softmax twin answers; a sigmoid head is refused (issue 32,
    item 9; before, `build` had no such keyword)."""
    import tensorflow as tf

    kw = dict(input_shape=(8, 8, 1), num_classes=10, depth=2, base_filters=8, seed=0)
    logits = zoo.build("doubling", classifier_activation=None, **kw)
    logits.set_weights(trained.get_weights())
    ev = export(logits, tmp_path, name="logits", signatures=("predict",), trained=True)
    x = digits.x_test[:8]
    out = tf.saved_model.load(str(ev.path)).signatures["serving_default"](images=tf.constant(x))
    assert np.max(np.abs(out["probabilities"].numpy() - trained.predict(x, verbose=0))) <= 1e-5
    assert json.loads((ev.path / "assets.extra" / "zoo.json").read_text())[
        "model_info"]["classifier_activation"] is None
    sigmoid = zoo.build("doubling", classifier_activation="sigmoid", **kw)
    with pytest.raises(ValueError, match="head ends in 'sigmoid' \\(classifier_activation\\)"):
        export(sigmoid, tmp_path, name="sigmoid", trained=True)
    assert not (tmp_path / "sigmoid").exists()
