"""Internal to serving.exporter.savedmodel: the graphs inside an exported SavedModel (signatures, method names, warmup).

Everything here is plain TensorFlow so the SavedModel loads without this package or Keras:
the Keras model is traced once inside `tf.function`s with explicit input names, and the class
names are graph constants. Only standard TF ops are used (parse_example, decode_image, resize,
map_fn), never `tf.py_function`, so TF Serving's C++ runtime can execute every signature.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cnnzoo.env import setup_tensorflow

setup_tensorflow()  # quiet TensorFlow before it is imported

from serving.exporter.metadata import warmup_path  # noqa: E402
from serving.names import CLASSIFY_METHOD, PREDICT_METHOD, REGRESS_METHOD  # noqa: E402

# Signature keys and what `export(signatures=...)` names turn into. "classify" also writes a
# regress signature (top-1 probability) so MultiInference(classify + regress) has two tasks.
SIGNATURE_KEYS: dict[str, tuple[str, ...]] = {
    "predict": ("serving_default",),
    "classify": ("classify", "regress"),
    "bytes": ("serving_bytes",),
}
METHOD_NAMES = {
    "serving_default": PREDICT_METHOD,
    "serving_bytes": PREDICT_METHOD,
    "classify": CLASSIFY_METHOD,
    "regress": REGRESS_METHOD,
}
# Channel counts tf.io.decode_image can convert every PNG and JPEG to.
BYTES_CHANNELS = (1, 3)


def build_signatures(model: Any, input_shape: Sequence[int], class_names: Sequence[str],
                     keys: Sequence[str], from_logits: bool = False) -> tuple[Any, dict[str, Any]]:
    """Return (module to save, {signature key: concrete function}) for the requested keys;
    `from_logits`: the model outputs logits, which the signatures turn into probabilities."""
    import tensorflow as tf

    height, width, channels = (int(d) for d in input_shape)
    names = list(class_names)
    module = tf.Module()
    module.model = model  # tracked, so its variables are saved with the signatures

    def probabilities(images):
        p = module.model(images, training=False)
        # A mixed-precision model may output float16; the contract is float32.
        p = tf.cast(p, tf.float32)
        return tf.nn.softmax(p, axis=-1) if from_logits else p

    def predict_outputs(p):
        ids = tf.argmax(p, axis=-1, output_type=tf.int64)
        return {"probabilities": p, "class_ids": ids,
                "classes": tf.gather(tf.constant(names, dtype=tf.string), ids)}

    def parse_images(serialized):
        size = height * width * channels
        features = tf.io.parse_example(
            serialized, {"images": tf.io.FixedLenFeature([size], tf.float32)})
        return tf.reshape(features["images"], [-1, height, width, channels])

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, channels], tf.float32,
                                                name="images")])
    def serving_default(images):
        return predict_outputs(probabilities(images))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(inputs):
        p = probabilities(parse_images(inputs))
        labels = tf.constant(names, dtype=tf.string)[tf.newaxis, :]
        return {"classes": tf.tile(labels, [tf.shape(p)[0], 1]), "scores": p}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(inputs):
        # Top-1 confidence: the one scalar per example that makes sense for a classifier.
        return {"outputs": tf.reduce_max(probabilities(parse_images(inputs)), axis=-1)}

    def decode_one(data):
        image = tf.io.decode_image(data, channels=channels, dtype=tf.float32,
                                   expand_animations=False)
        shape = tf.shape(image)[:2]
        # Skip resizing when the image already has the model's size, so PNGs of the model's own
        # inputs give exactly the serving_default answer.
        image = tf.cond(tf.reduce_all(shape == [height, width]),
                        lambda: image,
                        lambda: tf.image.resize(image, [height, width], antialias=True))
        return tf.ensure_shape(tf.clip_by_value(image, 0.0, 1.0), [height, width, channels])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images_bytes")])
    def serving_bytes(images_bytes):
        images = tf.map_fn(decode_one, images_bytes,
                           fn_output_signature=tf.TensorSpec([height, width, channels], tf.float32))
        return predict_outputs(probabilities(images))

    functions = {"serving_default": serving_default, "classify": classify, "regress": regress,
                 "serving_bytes": serving_bytes}
    return module, {key: functions[key].get_concrete_function() for key in keys}


def save(model: Any, path: Path, input_shape: Sequence[int], class_names: Sequence[str],
         keys: Sequence[str], from_logits: bool = False) -> None:
    """Write the SavedModel at `path` with the signatures `keys` and their proper method names."""
    import tensorflow as tf

    module, signatures = build_signatures(model, input_shape, class_names, keys, from_logits)
    tf.saved_model.save(module, str(path), signatures=signatures)
    set_method_names(path, {key: METHOD_NAMES[key] for key in keys})


def set_method_names(path: Path, methods: dict[str, str]) -> None:
    """Rewrite SignatureDef.method_name in `path/saved_model.pb`.

    TF2's `tf.saved_model.save` writes "tensorflow/serving/predict" for every signature, but TF
    Serving's Classify/Regress refuse a signature unless its method name is classify/regress.
    The fingerprint (a checksum of saved_model.pb) is regenerated afterwards.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    pb_path = Path(path) / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(pb_path.read_bytes())
    for meta_graph in saved_model.meta_graphs:
        for key, method in methods.items():
            if key in meta_graph.signature_def:
                meta_graph.signature_def[key].method_name = method
    pb_path.write_bytes(saved_model.SerializeToString())
    _rewrite_fingerprint(Path(path))


def _rewrite_fingerprint(path: Path) -> None:
    fingerprint = path / "fingerprint.pb"
    try:
        from tensorflow.python.saved_model import fingerprinting_utils
        fingerprint.unlink(missing_ok=True)
        fingerprinting_utils.write_fingerprint(str(path))
    except Exception:  # noqa: BLE001  (private API; a missing fingerprint is valid, a stale one is not)
        fingerprint.unlink(missing_ok=True)


def encode_png(images: np.ndarray) -> list[bytes]:
    """PNG bytes of float images in [0, 1] (NHWC), rounded to 8 bits."""
    import tensorflow as tf

    pixels = np.clip(np.rint(np.asarray(images, np.float32) * 255.0), 0, 255).astype(np.uint8)
    return [tf.io.encode_png(image).numpy() for image in pixels]


def _example(image: np.ndarray) -> Any:
    import tensorflow as tf

    flat = np.asarray(image, np.float32).reshape(-1)
    return tf.train.Example(features=tf.train.Features(
        feature={"images": tf.train.Feature(float_list=tf.train.FloatList(value=flat))}))


def warmup_records(model_name: str, keys: Sequence[str], samples: np.ndarray) -> list[Any]:
    """PredictionLog records, one per signature, each a request over all `samples`."""
    import tensorflow as tf
    from tensorflow_serving.apis import (classification_pb2, input_pb2, model_pb2, predict_pb2,
                                         prediction_log_pb2, regression_pb2)

    def spec(key: str) -> Any:
        return model_pb2.ModelSpec(name=model_name, signature_name=key)

    def examples() -> Any:
        return input_pb2.Input(example_list=input_pb2.ExampleList(
            examples=[_example(image) for image in samples]))

    logs = []
    for key in keys:
        if key == "serving_default":
            request = predict_pb2.PredictRequest(model_spec=spec(key))
            request.inputs["images"].CopyFrom(tf.make_tensor_proto(samples.astype(np.float32)))
            logs.append(prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)))
        elif key == "serving_bytes":
            request = predict_pb2.PredictRequest(model_spec=spec(key))
            request.inputs["images_bytes"].CopyFrom(
                tf.make_tensor_proto(encode_png(samples), dtype=tf.string))
            logs.append(prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)))
        elif key == "classify":
            request = classification_pb2.ClassificationRequest(model_spec=spec(key), input=examples())
            logs.append(prediction_log_pb2.PredictionLog(
                classify_log=prediction_log_pb2.ClassifyLog(request=request)))
        elif key == "regress":
            request = regression_pb2.RegressionRequest(model_spec=spec(key), input=examples())
            logs.append(prediction_log_pb2.PredictionLog(
                regress_log=prediction_log_pb2.RegressLog(request=request)))
    return logs


def write_warmup(path: Path, model_name: str, keys: Sequence[str], samples: np.ndarray) -> Path:
    """Write `path/assets.extra/tf_serving_warmup_requests` (TFRecord of PredictionLog)."""
    import tensorflow as tf

    target = warmup_path(path)
    os.makedirs(target.parent, exist_ok=True)
    with tf.io.TFRecordWriter(str(target)) as writer:
        for log in warmup_records(model_name, keys, samples):
            writer.write(log.SerializeToString())
    return target
