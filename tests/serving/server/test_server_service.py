"""serving.server.service, the data plane both front ends call, over a real ModelManager and SavedModel."""
from __future__ import annotations

import time

import grpc
import numpy as np
import pytest
import tensorflow as tf

import _serving_models as sm
from serving.errors import ServingError
from serving.exporter.model_server_config import ModelConfig
from serving.server.repository import ModelManager
from serving.names import CLASSIFY_METHOD, REGRESS_METHOD
from serving.server.service import ModelRef, Service


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("service")
    sm.write_model(str(root / "tiny"), 1, bias=1.0)
    manager = ModelManager([ModelConfig("tiny", str(root / "tiny"))], poll_seconds=0)
    manager.start()
    yield Service(manager)
    manager.stop()


def test_predict_decodes_once_the_signature_is_known(service):
    seen = []

    def decode(sig):
        seen.append(sig.name)
        return {"images": sm.sample_images(2)}

    result = service.predict(ModelRef("tiny"), decode)
    assert (result.model, result.version, result.signature) == ("tiny", 1, "serving_default")
    assert seen == ["serving_default"] and result.outputs["probabilities"].shape == (2, sm.K)


def test_nothing_is_decoded_or_run_for_a_request_whose_deadline_has_passed(service):
    """Decoding a request can be the expensive part (a batch of PNGs): a request that waited past
    its deadline (in a busy server's queue) must not start it."""
    calls = []
    with pytest.raises(ServingError) as info:
        service.predict(ModelRef("tiny"), lambda sig: calls.append(sig) or {}, deadline=time.monotonic() - 1)
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and calls == []
    with pytest.raises(ServingError) as info:
        service.classify(ModelRef("tiny", signature_name="classify"), lambda: calls.append(1) or [],
                         deadline=time.monotonic() - 1)
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and calls == []


def test_an_unknown_model_is_not_found_before_the_inputs_are_looked_at(service):
    with pytest.raises(ServingError) as info:
        service.predict(ModelRef("nope"), lambda sig: pytest.fail("decoded for an unknown model"))
    assert info.value.code == grpc.StatusCode.NOT_FOUND


def test_multi_inference_and_status(service):
    example = sm.sample_images(1).reshape(-1)
    serialized = tf.train.Example(features=tf.train.Features(feature={
        "images": tf.train.Feature(float_list=tf.train.FloatList(value=example))})).SerializeToString()
    results = service.multi_inference([(ModelRef("tiny", signature_name="classify"), CLASSIFY_METHOD),
                                       (ModelRef("tiny", signature_name="regress"), REGRESS_METHOD)],
                                      lambda: [serialized])
    assert len(results[0].rows()[0]) == sm.K
    assert np.isclose(results[1].values[0], example.sum() + 1.0)
    with pytest.raises(ServingError, match="Duplicate evaluation"):
        service.multi_inference([(ModelRef("tiny", signature_name="regress"), REGRESS_METHOD)] * 2, lambda: [])
    (status,) = service.status(ModelRef("tiny"))
    assert status.version == 1 and status.state.name == "AVAILABLE" and status.error is None
    with pytest.raises(ServingError, match="signature_name must be a string"):
        ModelRef("tiny", signature_name=["classify"])
