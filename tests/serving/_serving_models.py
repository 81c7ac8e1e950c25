"""Tiny SavedModels with the exported signatures' shapes, made without Keras (fast to write).

Signatures match serving.export's contract: serving_default (images -> probabilities, class_ids,
classes), classify and regress over serialized tf.Example, serving_bytes over PNG bytes, and a
warmup file. `bias` makes versions distinguishable: regress returns sum(images) + bias.
"""
from __future__ import annotations

import os
import time

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from serving.exporter.metadata import warmup_path

H, W, C, K = 8, 8, 1, 10
CLASS_NAMES = [f"digit_{i}" for i in range(K)]


class _TinyModel(tf.Module):
    def __init__(self, bias: float, seed: int) -> None:
        super().__init__()
        rng = np.random.default_rng(seed)
        self.w = tf.Variable(rng.normal(size=(H * W * C, K)).astype("float32"))
        self.bias = tf.Variable(float(bias))
        self.names = tf.constant(CLASS_NAMES)

    def _predict(self, images):
        logits = tf.matmul(tf.reshape(images, [-1, H * W * C]), self.w)
        probs = tf.nn.softmax(logits)
        ids = tf.argmax(probs, axis=-1)
        return {"probabilities": probs, "class_ids": ids, "classes": tf.gather(self.names, ids)}

    @tf.function(input_signature=[tf.TensorSpec([None, H, W, C], tf.float32, name="images")])
    def serving_default(self, images):
        return self._predict(images)

    def _parse(self, inputs):
        feats = tf.io.parse_example(inputs, {"images": tf.io.FixedLenFeature([H * W * C], tf.float32)})
        return tf.reshape(feats["images"], [-1, H, W, C])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        probs = self._predict(self._parse(inputs))["probabilities"]
        classes = tf.tile(self.names[tf.newaxis], [tf.shape(probs)[0], 1])
        return {"classes": classes, "scores": probs}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs):
        images = self._parse(inputs)
        return {"outputs": tf.reduce_sum(images, axis=[1, 2, 3]) + self.bias}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images_bytes")])
    def serving_bytes(self, images_bytes):
        def decode(b):
            img = tf.cast(tf.io.decode_png(b, channels=C), tf.float32) / 255.0
            return tf.image.resize(img, [H, W])
        images = tf.map_fn(decode, images_bytes, fn_output_signature=tf.float32)
        return self._predict(images)


def write_model(base_path: str, version: int, *, bias: float = 0.0, seed: int = 0,
                warmup: bool = True) -> str:
    """Write `base_path/<version>/` (via a temp dir + rename, like serving.export)."""
    module = _TinyModel(bias, seed)
    signatures = {
        "serving_default": module.serving_default.get_concrete_function(),
        "classify": module.classify.get_concrete_function(),
        "regress": module.regress.get_concrete_function(),
        "serving_bytes": module.serving_bytes.get_concrete_function(),
    }
    final = os.path.join(base_path, str(version))
    tmp = os.path.join(base_path, f".tmp-{version}")
    os.makedirs(base_path, exist_ok=True)
    tf.saved_model.save(module, tmp, signatures=signatures)
    _set_method_names(tmp)
    if warmup:
        _write_warmup(tmp)
    os.rename(tmp, final)
    return final


def _write_warmup(version_path: str) -> None:
    """One blank-image Predict request as the version's warmup file (TF Serving's format)."""
    path = warmup_path(version_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    req = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="warmup"))
    req.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros((1, H, W, C), np.float32)))
    with tf.io.TFRecordWriter(str(path)) as w:
        w.write(prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=req)).SerializeToString())


def _set_method_names(path: str) -> None:
    """tf.saved_model.save writes every signature as predict; mark classify/regress like export does."""
    from tensorflow.core.protobuf import saved_model_pb2

    pb = os.path.join(path, "saved_model.pb")
    sm = saved_model_pb2.SavedModel()
    with open(pb, "rb") as fh:
        sm.ParseFromString(fh.read())
    sigs = sm.meta_graphs[0].signature_def
    sigs["classify"].method_name = "tensorflow/serving/classify"
    sigs["regress"].method_name = "tensorflow/serving/regress"
    with open(pb, "wb") as fh:
        fh.write(sm.SerializeToString())


def sample_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, H, W, C), dtype=np.float32)


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05):
    """Poll `predicate` until it returns something truthy (returned), or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


class _ReadsAFile(tf.Module):
    """serving_default reads `path` on every call: with a FIFO there, each call (a warmup too)
    blocks inside TensorFlow until someone opens the FIFO for writing. A request or load that
    lasts as long as a test wants, without sleeping in the model."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    @tf.function(input_signature=[tf.TensorSpec([None, H, W, C], tf.float32, name="images")])
    def serving_default(self, images):
        size = tf.cast(tf.strings.length(tf.io.read_file(self.path)), tf.float32)
        return {"total": tf.reduce_sum(images, axis=[1, 2, 3]) + size}


def write_blocking_model(base_path: str, version: int, fifo: str, *, warmup: bool = False) -> str:
    """`base_path/<version>/` whose every call blocks on the FIFO `fifo` (made if missing) until
    `release(fifo)`; with `warmup`, so does its load."""
    if not os.path.exists(fifo):
        os.mkfifo(fifo)
    module = _ReadsAFile(fifo)
    final = os.path.join(base_path, str(version))
    tmp = os.path.join(base_path, f".tmp-{version}")
    os.makedirs(base_path, exist_ok=True)
    tf.saved_model.save(module, tmp, signatures={"serving_default": module.serving_default})
    if warmup:
        _write_warmup(tmp)
    os.rename(tmp, final)
    return final


def release(fifo: str, seconds: float = 1.0) -> None:
    """Let the calls blocked on `fifo` go on (they read it empty). TensorFlow opens the file more
    than once per read, so writers are opened and closed for `seconds`, while readers come."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # no reader right now
            pass
        time.sleep(0.01)


def reload_config(channel, *models, timeout=60):
    """ReloadConfig over gRPC with `models`: (name, base_path) or (name, base_path, {label: version})."""
    from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    for name, base_path, *labels in models:
        entry = config.model_config_list.config.add(name=name, base_path=base_path,
                                                    model_platform="tensorflow")
        for label, version in (labels[0] if labels else {}).items():
            entry.version_labels[label] = version
    return model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
        model_management_pb2.ReloadConfigRequest(config=config), timeout=timeout)


def rpc_or_none(fn):
    """`fn()`, or None when it fails with a gRPC error (a version not served yet, say)."""
    import grpc

    try:
        return fn()
    except grpc.RpcError:
        return None



class _Spins(tf.Module):
    """serving_default keeps TensorFlow busy for `seconds` per call (a loop on tf.timestamp, so
    the time is model time that a cancelled run stops at its next iteration), then answers
    sum(images); with `lookup`, a second signature gathers rows of a 10-row table by id."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = tf.constant(seconds, tf.float64)
        self.table = tf.Variable(tf.range(10, dtype=tf.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, H, W, C], tf.float32, name="images")])
    def serving_default(self, images):
        start = tf.timestamp()
        tf.while_loop(lambda t: t - start < self.seconds, lambda t: [tf.timestamp()], [start])
        return {"total": tf.reduce_sum(images, axis=[1, 2, 3])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="ids")])
    def lookup(self, ids):
        return {"values": tf.gather(self.table, ids)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="n")])
    def fill(self, n):
        return {"values": tf.fill(tf.stack([tf.shape(n, out_type=tf.int64)[0], n[0]]), 0.5)}


def write_spinning_model(base_path: str, version: int, seconds: float) -> str:
    """`base_path/<version>/` whose serving_default spends `seconds` of model time per call and
    whose `lookup` signature (ids [None] int64 -> values) fails for an id outside [0, 10); `fill`
    answers n[0] halves per row (a big answer from a small request)."""
    module = _Spins(seconds)
    final = os.path.join(base_path, str(version))
    tmp = os.path.join(base_path, f".tmp-{version}")
    os.makedirs(base_path, exist_ok=True)
    tf.saved_model.save(module, tmp, signatures={"serving_default": module.serving_default,
                                                 "lookup": module.lookup, "fill": module.fill})
    os.rename(tmp, final)
    return final
