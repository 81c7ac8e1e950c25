"""gRPC API of the embedded server, driven with the raw tensorflow_serving.apis stubs.

One in-process server for the module: model `tiny` with versions 1 and 2 (policy all, label
stable -> 1), model `solo` (latest). Every RPC, and every status code of TF Serving's table.
"""
from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import wrappers_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tensorflow.core.framework import tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     inference_pb2, input_pb2, model_management_pb2, model_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc,
                                     regression_pb2)
from tensorflow_serving.config import model_server_config_pb2

import _serving_models as sm
from serving.server.model_server import ModelServer, ServerOptions

CODE = grpc.StatusCode


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("grpc_models")
    sm.write_model(str(root / "tiny"), 1, bias=1.0)
    sm.write_model(str(root / "tiny"), 2, bias=2.0)
    sm.write_model(str(root / "solo"), 7, bias=7.0)
    (root / "models.config").write_text("""
model_config_list {
  config { name: "tiny" base_path: "tiny" model_platform: "tensorflow"
           model_version_policy { all {} } version_labels { key: "stable" value: 1 } }
  config { name: "solo" base_path: "solo" model_platform: "tensorflow" }
}""")
    return root


@pytest.fixture(scope="module")
def server(repo):
    srv = ModelServer(ServerOptions(port=0, model_config_file=str(repo / "models.config"),
                                    file_system_poll_wait_seconds=0))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as ch:
        yield ch


@pytest.fixture(scope="module")
def predict_stub(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def model_stub(channel):
    return model_service_pb2_grpc.ModelServiceStub(channel)


def spec(name="tiny", version=None, label=None, signature=""):
    s = model_pb2.ModelSpec(name=name, signature_name=signature)
    if version is not None:
        s.version.CopyFrom(wrappers_pb2.Int64Value(value=version))
    if label is not None:
        s.version_label = label
    return s


def predict_request(images, **kw):
    req = predict_pb2.PredictRequest(model_spec=spec(**kw))
    req.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    return req


def examples(images):
    return [tf.train.Example(features=tf.train.Features(feature={
        "images": tf.train.Feature(float_list=tf.train.FloatList(value=img.ravel()))})) for img in images]


def error_of(call, request):
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30)
    return info.value.code(), info.value.details()


def test_predict_latest_fills_model_spec_and_typed_outputs(predict_stub):
    x = sm.sample_images(3)
    resp = predict_stub.Predict(predict_request(x), timeout=30)
    assert (resp.model_spec.name, resp.model_spec.version.value, resp.model_spec.signature_name) == \
        ("tiny", 2, "serving_default")
    assert set(resp.outputs) == {"probabilities", "class_ids", "classes"}
    probs = resp.outputs["probabilities"]
    assert not probs.tensor_content and len(probs.float_val) == 3 * sm.K  # typed fields, like TF Serving
    assert [d.size for d in probs.tensor_shape.dim] == [3, sm.K]
    np.testing.assert_allclose(np.array(probs.float_val).reshape(3, sm.K).sum(1), 1.0, rtol=1e-5)
    ids = list(resp.outputs["class_ids"].int64_val)
    assert [c.decode() for c in resp.outputs["classes"].string_val] == [sm.CLASS_NAMES[i] for i in ids]


def test_predict_typed_field_input_version_label_and_output_filter(predict_stub):
    x = sm.sample_images(2)
    req = predict_pb2.PredictRequest(model_spec=spec(label="stable"), output_filter=["class_ids"])
    req.inputs["images"].dtype = types_pb2.DT_FLOAT  # typed float_val instead of tensor_content
    req.inputs["images"].tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in x.shape]))
    req.inputs["images"].float_val.extend(x.ravel().tolist())
    resp = predict_stub.Predict(req, timeout=30)
    assert resp.model_spec.version.value == 1
    assert list(resp.outputs) == ["class_ids"]
    resp2 = predict_stub.Predict(predict_request(x, version=1), timeout=30)
    assert list(resp.outputs["class_ids"].int64_val) == list(resp2.outputs["class_ids"].int64_val)


def test_predict_bytes_signature(predict_stub):
    png = tf.io.encode_png(tf.zeros([8, 8, 1], tf.uint8)).numpy()
    req = predict_pb2.PredictRequest(model_spec=spec(signature="serving_bytes"))
    req.inputs["images_bytes"].CopyFrom(tf.make_tensor_proto([png, png]))
    resp = predict_stub.Predict(req, timeout=30)
    assert [d.size for d in resp.outputs["probabilities"].tensor_shape.dim] == [2, sm.K]


@pytest.mark.parametrize("case, code, fragment", [
    ("no_model_spec", CODE.INVALID_ARGUMENT, "Missing ModelSpec"),
    ("unknown_model", CODE.NOT_FOUND, "Servable not found for request: Latest(nope)"),
    ("unknown_version", CODE.NOT_FOUND, "Servable not found for request: Specific(tiny, 9)"),
    ("unknown_label", CODE.INVALID_ARGUMENT, "Unrecognized servable version label: canary"),
    ("unknown_signature", CODE.FAILED_PRECONDITION, 'Serving signature key "nope" not found.'),
    ("extra_and_missing_input", CODE.INVALID_ARGUMENT, "Sent extra: {pixels}. Missing but required: {images}."),
    ("bad_tensor", CODE.INVALID_ARGUMENT, "tensor parsing error: images"),
    ("wrong_dtype", CODE.INVALID_ARGUMENT, "input 'images': expected dtype DT_FLOAT, got DT_DOUBLE"),
    ("wrong_shape", CODE.INVALID_ARGUMENT, "input 'images': expected shape [-1,8,8,1] (-1 = any), got [1,4,4,1]"),
    ("bad_output_filter", CODE.INVALID_ARGUMENT, "output tensor alias not found in signature: logits"),
    ("duplicate_output_filter", CODE.INVALID_ARGUMENT, "duplicate output tensor alias: classes"),
])
def test_predict_status_codes(predict_stub, case, code, fragment):
    x = sm.sample_images(1)
    req = predict_request(x)
    if case == "no_model_spec":
        req.ClearField("model_spec")
    elif case == "unknown_model":
        req.model_spec.name = "nope"
    elif case == "unknown_version":
        req.model_spec.version.value = 9
    elif case == "unknown_label":
        req.model_spec.version_label = "canary"
    elif case == "unknown_signature":
        req.model_spec.signature_name = "nope"
    elif case == "extra_and_missing_input":
        req.inputs["pixels"].CopyFrom(req.inputs.pop("images"))
    elif case == "bad_tensor":
        req.inputs["images"].tensor_content = b"\x00" * 7
    elif case == "wrong_dtype":
        req.inputs["images"].CopyFrom(tf.make_tensor_proto(x.astype(np.float64)))
    elif case == "wrong_shape":
        req.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 4, 4, 1), np.float32)))
    elif case == "bad_output_filter":
        req.output_filter.append("logits")
    elif case == "duplicate_output_filter":
        req.output_filter.extend(["classes", "classes"])
    got_code, details = error_of(predict_stub.Predict, req)
    assert got_code == code
    assert fragment in details


def test_long_error_messages_are_truncated(predict_stub):
    req = predict_request(sm.sample_images(1))
    req.model_spec.signature_name = "s" * 3000
    _, details = error_of(predict_stub.Predict, req)
    assert len(details) == 1024 and details.endswith("...TRUNCATED")


def test_classify_regress_and_multi_inference(predict_stub):
    x = sm.sample_images(2)
    inp = input_pb2.Input(example_list=input_pb2.ExampleList(examples=examples(x)))
    cls = predict_stub.Classify(classification_pb2.ClassificationRequest(
        model_spec=spec(signature="classify"), input=inp), timeout=30)
    assert cls.model_spec.version.value == 2 and cls.model_spec.signature_name == "classify"
    assert len(cls.result.classifications) == 2
    first = cls.result.classifications[0].classes
    assert [c.label for c in first] == sm.CLASS_NAMES
    assert sum(c.score for c in first) == pytest.approx(1.0, rel=1e-5)

    reg = predict_stub.Regress(regression_pb2.RegressionRequest(
        model_spec=spec(version=1, signature="regress"), input=inp), timeout=30)
    np.testing.assert_allclose([r.value for r in reg.result.regressions], x.sum(axis=(1, 2, 3)) + 1.0, rtol=1e-5)

    # context features are merged into every example (the example's own feature wins)
    ctx_inp = input_pb2.Input(example_list_with_context=input_pb2.ExampleListWithContext(
        examples=[tf.train.Example()], context=examples(x[:1])[0]))
    reg = predict_stub.Regress(regression_pb2.RegressionRequest(
        model_spec=spec(signature="regress"), input=ctx_inp), timeout=30)
    assert reg.result.regressions[0].value == pytest.approx(float(x[0].sum()) + 2.0, rel=1e-5)

    multi = predict_stub.MultiInference(inference_pb2.MultiInferenceRequest(tasks=[
        inference_pb2.InferenceTask(model_spec=spec(signature="classify"), method_name="tensorflow/serving/classify"),
        inference_pb2.InferenceTask(model_spec=spec(signature="regress"), method_name="tensorflow/serving/regress"),
    ], input=inp), timeout=30)
    assert [r.WhichOneof("result") for r in multi.results] == ["classification_result", "regression_result"]
    assert multi.results[1].model_spec.signature_name == "regress"


@pytest.mark.parametrize("case, fragment", [
    ("predict_signature", "Expected classification signature method_name to be tensorflow/serving/classify"),
    ("unknown_signature", "No signature was found with name: nope"),
    ("empty_input", "Input is empty"),
])
def test_classify_errors_are_invalid_argument(predict_stub, case, fragment):
    inp = input_pb2.Input(example_list=input_pb2.ExampleList(examples=examples(sm.sample_images(1))))
    sig = {"predict_signature": "", "unknown_signature": "nope", "empty_input": "classify"}[case]
    req = classification_pb2.ClassificationRequest(model_spec=spec(signature=sig), input=inp)
    if case == "empty_input":
        req.ClearField("input")
    code, details = error_of(predict_stub.Classify, req)
    assert code == CODE.INVALID_ARGUMENT and fragment in details


def test_multi_inference_errors(predict_stub):
    inp = input_pb2.Input(example_list=input_pb2.ExampleList(examples=examples(sm.sample_images(1))))
    task = inference_pb2.InferenceTask(model_spec=spec(signature="regress"), method_name="tensorflow/serving/regress")
    other = inference_pb2.InferenceTask(model_spec=spec("solo", signature="classify"),
                                        method_name="tensorflow/serving/classify")
    for tasks, fragment in [([task, task], "Duplicate evaluation of signature: regress"),
                            ([task, other], "same model name"), ([], "Tasks is empty")]:
        code, details = error_of(predict_stub.MultiInference,
                                 inference_pb2.MultiInferenceRequest(tasks=tasks, input=inp))
        assert code == CODE.INVALID_ARGUMENT and fragment in details
    code, _ = error_of(predict_stub.Regress, regression_pb2.RegressionRequest(
        model_spec=spec(signature="nope"), input=inp))
    assert code == CODE.INVALID_ARGUMENT


def test_get_model_metadata(predict_stub):
    resp = predict_stub.GetModelMetadata(get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=spec(version=1), metadata_field=["signature_def"]), timeout=30)
    assert resp.model_spec.version.value == 1
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    assert resp.metadata["signature_def"].Unpack(sig_map)
    assert set(sig_map.signature_def) == {"serving_default", "classify", "regress", "serving_bytes"}
    assert sig_map.signature_def["classify"].method_name == "tensorflow/serving/classify"
    assert sig_map.signature_def["serving_default"].inputs["images"].dtype == types_pb2.DT_FLOAT
    for fields, fragment in [([], "at least one metadata_field"),
                             (["weights"], "Metadata field weights is not supported")]:
        code, details = error_of(predict_stub.GetModelMetadata, get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=spec(), metadata_field=fields))
        assert code == CODE.INVALID_ARGUMENT and fragment in details


def test_get_model_status(model_stub):
    resp = model_stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(model_spec=spec()), timeout=30)
    assert [(s.version, s.state, s.status.error_code) for s in resp.model_version_status] == [
        (2, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0),
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0)]
    one = model_stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(model_spec=spec(version=1)), timeout=30)
    assert [s.version for s in one.model_version_status] == [1]
    labelled = model_stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(model_spec=spec(label="stable")),
                                         timeout=30)
    assert [s.version for s in labelled.model_version_status] == [1]
    for s, fragment in [(spec("nope"), "Could not find any versions of model nope"),
                        (spec(version=5), "Could not find version 5 of model tiny")]:
        code, details = error_of(model_stub.GetModelStatus, get_model_status_pb2.GetModelStatusRequest(model_spec=s))
        assert code == CODE.NOT_FOUND and fragment in details
    code, _ = error_of(model_stub.GetModelStatus, get_model_status_pb2.GetModelStatusRequest())
    assert code == CODE.INVALID_ARGUMENT


def test_health_and_reflection(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "tensorflow.serving.PredictionService", "tensorflow.serving.ModelService"):
        assert health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status == \
            health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = list(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                             timeout=10))
    names = {s.name for s in answers[0].list_services_response.service}
    assert {"tensorflow.serving.PredictionService", "tensorflow.serving.ModelService",
            "grpc.health.v1.Health"} <= names


def test_reload_config_replaces_the_model_set(repo, model_stub, predict_stub):
    """Runs last in this module: afterwards only `solo` (under a new name) is served."""
    config = model_server_config_pb2.ModelServerConfig()
    c = config.model_config_list.config.add(name="renamed", base_path=str(repo / "solo"), model_platform="tensorflow")
    c.model_version_policy.specific.versions.append(7)
    resp = model_stub.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=config), timeout=60)
    assert resp.status.error_code == 0
    out = predict_stub.Predict(predict_request(sm.sample_images(1), name="renamed"), timeout=30)
    assert out.model_spec.version.value == 7
    code, _ = error_of(predict_stub.Predict, predict_request(sm.sample_images(1)))
    assert code == CODE.NOT_FOUND  # tiny was left out of the new config: unloaded
    bad = model_server_config_pb2.ModelServerConfig()
    bad.model_config_list.config.add(name="ghost", base_path=str(repo / "missing"), model_platform="tensorflow")
    code, details = error_of(model_stub.HandleReloadConfigRequest, model_management_pb2.ReloadConfigRequest(config=bad))
    assert code == CODE.NOT_FOUND and "ghost" in details
