"""serving.server.frontends._json_fast: the simdjson fast path for Predict bodies, alone and through the real server.

Its contract: an array from the fast path equals np.array(json.loads(raw)[key], dtype) bit for bit,
and any body it is not sure of goes to the general path (None), so every answer, errors included,
is the one the general path gives.
"""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import numpy as np
import orjson
import pytest
from tensorflow.core.framework import types_pb2

import _serving_models as sm
from serving import tensors
from serving.server.frontends import _json_fast
from serving.server.frontends import tfserving_rest as rest_api
from serving.server.model_server import ModelServer, ServerOptions

FLOATS = (np.float16, np.float32, np.float64)


def fast(raw: bytes, dtype=np.float32):
    body = _json_fast.parse_predict(raw)
    return None if body is None else body.to_numpy(np.dtype(dtype))


def general(raw: bytes, dtype=np.float32, key: str | None = None):
    value = json.loads(raw)
    return np.array(value[key or ("instances" if "instances" in value else "inputs")], dtype=dtype)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# ------------------------------------------------------------------------------- the module alone

@pytest.mark.parametrize("shape", [(1,), (7,), (3, 4), (2, 8, 8, 1), (32, 4, 4, 3), (2, 1, 3, 1, 2)])
@pytest.mark.parametrize("dtype", FLOATS)
def test_fast_equals_general_on_random_arrays(shape, dtype):
    rng = np.random.default_rng(sum(shape))
    scale = {np.float16: 3, np.float32: 10, np.float64: 30}[dtype]  # float16 overflows past 65504
    x = (rng.standard_normal(shape) * 10.0 ** rng.integers(-scale, scale, shape)).astype(np.float32)
    for raw in (json.dumps({"instances": x.tolist()}).encode(),
                orjson.dumps({"signature_name": "serving_default", "inputs": x}, option=orjson.OPT_SERIALIZE_NUMPY),
                json.dumps({"inputs": x.astype(np.float64).tolist(), "signature_name": "s"}, indent=2).encode()):
        got = fast(raw, dtype)
        assert got is not None and same_bits(got, general(raw, dtype))
        assert got.flags.writeable and got.flags.c_contiguous


@pytest.mark.parametrize("text, want", [
    ("[1e5, 2.5E-3, -1.5e+2, 1E0, 0e0, 5e-324]", [1e5, 2.5e-3, -150.0, 1.0, 0.0, 5e-324]),  # exponents
    ("[-1, -0.5, -0, -0.0, -65504]", [-1, -0.5, 0.0, -0.0, -65504]),  # negatives, -0 is int 0
    ("[1, 2, 3, 9007199254740991]", [1, 2, 3, 2**53 - 1]),  # ints, exact below 2**53
    ("[0.1, 0.30000000000000004, 123456789.123456789, 1.00000000000000000000001]", None),  # long decimals
    (" [ [ 1 ,\t2 ] ,\r\n [ 3 , 4 ] ] ", [[1, 2], [3, 4]]),  # whitespace and newlines everywhere
    ("[[[[[[[[[[1.5]]]]]]]]]]", [[[[[[[[[[1.5]]]]]]]]]]),  # deep but small
])
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # float16, both paths
def test_fast_number_syntax(text, want, dtype):
    raw = ('{ "signature_name" : "x" ,\n "instances" : ' + text + ' }').encode()
    got = fast(raw, dtype)
    assert got is not None and same_bits(got, general(raw, dtype))
    if want is not None:
        assert same_bits(got, np.array(want, dtype=dtype))


@pytest.mark.parametrize("raw", [
    b'{"instances": [[1, 2], [3], [4, 5, 6]]}',  # ragged, 6 values like a [2, 3]
    b'{"instances": [[1, 2, 3], [4, 5], [6]]}',  # ragged, first row says [3, 3]: 9 != 6
    b'{"instances": [[1, 2], [3, 4, 5, 6]]}',  # [2, 2] by the first row, 6 values
    b'{"instances": [[[1, 2], [3, 4]], [[5, 6, 7, 8]]]}',  # 8 values, shape [2, 2, 2] by the first path
    b'{"instances": [[1, 2], [[3], 4]]}',  # 4 values, a list where a number should be
    b'{"instances": [[1, 2], 3, 4]}',  # 4 values, numbers where lists should be
    b'{"instances": [1, [2]]}',
    b'{"instances": []}', b'{"instances": [[]]}', b'{"instances": [[], []]}', b'{"inputs": [[1], []]}',  # empty
    b'{"instances": [NaN, 1]}', b'{"instances": [Infinity]}', b'{"instances": [-Infinity]}',  # not JSON to simdjson
    b'{"instances": [1e400]}', b'{"instances": [123456789012345678901234567890]}',  # out of double / uint64 range
    b'{"instances": [1, true]}', b'{"instances": [false, 1]}', b'{"instances": [1, null]}',
    b'{"instances": [1, "2"]}', b'{"instances": ["1"]}',
    b'{"instances": [{"b64": "AAAA"}]}', b'{"instances": [{"images": [1.0]}]}', b'{"instances": [1, {"a": 1}]}',
    b'{"instances": 5}', b'{"instances": "[1]"}', b'{"inputs": {"images": [1.0]}}',  # not an array
    b'{"signature_name": "a[b", "instances": [1.0]}', b'{"signature_name": "a]", "instances": [1.0]}',
    b'{"signature_name": "\\u005b", "instances": [1.0]}', b'{"x[": "y", "instances": [1.0]}',  # brackets elsewhere
    b'{"signature_name": 3, "instances": [1.0]}', b'{"signature_name": null, "instances": [1.0]}',
    b'{"pad": [0], "instances": [1.0]}', b'{"instances": [1.0], "inputs": [1.0]}',  # a second array
    b'{"instances": [1.0], "instances": [2.0]}', b'{"signature_name": "a", "signature_name": "b", "instances": [1]}',
    b'[1.0]', b'1.0', b'', b'{', b'{"instances": [1.0]', b'{"instances": [1.0]} x', b'not json [1]',
    b'{"instances": [1.0,]}', b'{"instances": [.5]}', b'{"instances": [01]}', b'{"instances": [1.]}',  # bad numbers
    b'{"instances": [+1]}', b'{"instances": [1e]}', b'{"instances": [-]}',
    b'{"instances": ' + b'[' * 3000 + b']' * 3000 + b'}',  # deeper than any parser's limit
])
@pytest.mark.parametrize("dtype", FLOATS)
def test_fast_path_declines(raw, dtype):
    assert fast(raw, dtype) is None


@pytest.mark.parametrize("raw", [
    b'{"instances": [1.0]}\x00', b'\x00{"instances": [1.0]}', b'{"instances": [1.0]}\x0c', b'{"instances":\x0b[1.0]}',
    b'{"instances": [1.0]}\n\t ', b' \r\n{"instances": [1.0]}',
    b'\xef\xbb\xbf{"instances": [1.0]}',  # BOM: json takes it
    b'{"instances": [1.0], "s": "\xff"}', b'{"instances": [1.0], "s": "\\ud800"}',
    b'{"instances": [1.0], "s": "a\x01b"}',
    b'{"instances": [1e-400, -1e-400, 2.4703282292062328e-324, 2.4703282292062327e-324]}',  # underflow
    b'{"instances": [1.7976931348623158e308, 1.7976931348623159e308]}', b'{"instances": [1.7976931348623158079e308]}',
    b'{"instances": [1' + b'0' * 400 + b'.0]}', b'{"instances": [0.' + b'0' * 400 + b'1]}',
    b'{"instances": [-9223372036854775808, 9223372036854775807, 18446744073709551615]}',
])
def test_fast_path_never_answers_what_the_general_parse_would_not(raw):
    """Whatever the bytes, a fast answer is the general parse's value; a general error means None."""
    try:
        want = np.array(rest_api._parse_json(raw)["instances"], np.float64)
    except Exception:
        want = None
    got = fast(raw, np.float64)
    assert got is None or (want is not None and same_bits(got, want))


def test_random_edits_never_make_the_fast_path_disagree():
    """Fuzz: 1-3 random edits of a valid body; fast answers only with the general parse's array."""
    rng = np.random.default_rng(0)
    base = b'{"signature_name": "s", "instances": [[[1.5, 2], [3, -4e2]], [[0.25, 5E-1], [6, 7]]]}'
    alphabet = b'[],0123456789.eE+- "x{}:\n'
    answered = 0
    for _ in range(3000):
        raw = bytearray(base)
        for _ in range(rng.integers(1, 4)):
            i = int(rng.integers(0, len(raw)))
            kind = rng.integers(0, 3)
            if kind == 0 and len(raw) > 1:
                del raw[i]
            elif kind == 1:
                raw.insert(i, alphabet[rng.integers(0, len(alphabet))])
            else:
                raw[i] = alphabet[rng.integers(0, len(alphabet))]
        raw = bytes(raw)
        got = fast(raw, np.float64)
        if got is None:
            continue
        answered += 1
        body = rest_api._parse_json(raw)  # must parse, and give the same array
        key = "instances" if "instances" in body else "inputs"
        assert same_bits(got, np.array(body[key], np.float64)), raw
    assert answered > 100  # edits inside numbers keep bodies valid: the check saw real answers


@pytest.mark.parametrize("raw", [b'{"instances": [9007199254740993]}', b'{"instances": [-9007199254740992.0]}',
                                 b'{"instances": [18446744073709551615]}', b'{"instances": [1, 1e300]}'])
def test_magnitudes_of_2_53_and_more_are_fast_only_for_float64(raw):
    assert same_bits(fast(raw, np.float64), general(raw, np.float64))
    assert fast(raw, np.float32) is None and fast(raw, np.float16) is None


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.bool_, object])
def test_fast_path_is_only_for_float_dtypes(dtype):
    assert fast(b'{"instances": [[1, 2], [3, 4]]}', dtype) is None


def test_other_string_fields_and_unknown_ones_are_kept():
    body = _json_fast.parse_predict(b'{"signature_name": "s\\u00e9 x", "instances": [1], "note": "n"}')
    assert body.fields == {"signature_name": "s\u00e9 x", "note": "n"} and body.key == "instances"
    assert body.to_numpy(np.float32).tolist() == [1.0]
    assert body.to_numpy(np.float32) is None  # read once


def test_bodies_are_independent_and_read_once():
    raw = b'{"instances": [[1.5, 2.5]]}'
    kept = _json_fast.parse_predict(raw)  # a live document does not block the next parse
    other = _json_fast.parse_predict(b'{"inputs": [3]}')
    assert other.to_numpy(np.float64).tolist() == [3.0]
    out = []
    thread = threading.Thread(target=lambda: out.append(kept.to_numpy(np.float32)))
    thread.start()
    thread.join()
    assert out[0].tolist() == [[1.5, 2.5]] and kept.to_numpy(np.float32) is None
    kept = _json_fast.parse_predict(raw)
    kept.release()
    assert kept.to_numpy(np.float32) is None


def test_concurrent_threads_each_parse_their_own():
    bodies = [np.random.default_rng(i).random((4, 8, 8, 1), dtype=np.float32) for i in range(8)]
    raws = [orjson.dumps({"instances": b}, option=orjson.OPT_SERIALIZE_NUMPY) for b in bodies]
    bad = []

    def work(i: int) -> None:
        for _ in range(50):
            got = fast(raws[i])
            if got is None or not same_bits(got, bodies[i]):
                bad.append(i)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad


@pytest.mark.parametrize("outputs", [
    {"probabilities": np.random.default_rng(0).random((3, 4), dtype=np.float32),
     "class_ids": np.array([1, 2, 3], np.int64), "classes": np.array([b"a", b"\xff"] * 1 + [b"c"], dtype=object),
     "flags": np.array([True, False, True]), "half": np.array([0.1, 1, 2], np.float16), "scalar": np.array(2.5)},
    {"probabilities": np.array([[np.nan, np.inf, -np.inf, 1]], np.float32)},
])
def test_response_json_equals_the_tolist_json(outputs):
    """dumps_json(numpy values) reads back as json.dumps(tolist()) did (floats as the same float32)."""
    for keep in (True, False):
        new = json.loads(tensors.dumps_json(
            {k: tensors.numpy_to_json(v, k, keep_numeric=keep) for k, v in outputs.items()}))
        old = json.loads(json.dumps({k: tensors.numpy_to_json(v, k) for k, v in outputs.items()}))
        assert new.keys() == old.keys()
        for k, v in outputs.items():
            if v.dtype.kind == "f":
                assert same_bits(np.array(new[k], v.dtype), np.array(old[k], v.dtype))
            else:
                assert new[k] == old[k]


# ------------------------------------------------------------------------------- through the server

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast_json_models")
    sm.write_model(str(root / "tiny"), 1, bias=1.0)
    (root / "models.config").write_text(
        'model_config_list { config { name: "tiny" base_path: "tiny" model_platform: "tensorflow" } }')
    srv = ModelServer(ServerOptions(port=0, rest_api_port=0, model_config_file=str(root / "models.config"),
                                    file_system_poll_wait_seconds=0))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def fast_calls(monkeypatch):
    """The values each PredictBody.to_numpy returned in the server (None: declined)."""
    calls = []
    original = _json_fast.PredictBody.to_numpy

    def spy(self, dtype):
        out = original(self, dtype)
        calls.append(out)
        return out
    monkeypatch.setattr(_json_fast.PredictBody, "to_numpy", spy)
    return calls


def post(server, raw: bytes, path: str = "/v1/models/tiny:predict") -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{server.rest_port}{path}", data=raw, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def padded(raw: bytes) -> bytes:
    """The same request with a number field the server ignores: never the fast path."""
    assert raw.startswith(b"{")
    return b'{"pad": 0, ' + raw[1:]


def assert_same_as_general(server, raw: bytes) -> tuple[int, bytes]:
    got, want = post(server, raw), post(server, padded(raw))
    assert got[0] == want[0] and json.loads(got[1]) == json.loads(want[1]), (got, want)
    return got


def test_server_takes_the_fast_path_and_answers_as_the_general_one(server, fast_calls):
    x = sm.sample_images(4, seed=5)
    for raw in (json.dumps({"instances": x.tolist()}).encode(),
                orjson.dumps({"signature_name": "serving_default", "inputs": x}, option=orjson.OPT_SERIALIZE_NUMPY)):
        status, _ = assert_same_as_general(server, raw)
        assert status == 200
    assert len(fast_calls) == 2 and all(a is not None and a.shape == (4, 8, 8, 1) for a in fast_calls)
    assert same_bits(fast_calls[0], x) and same_bits(fast_calls[1], x)


def test_ragged_bodies_get_the_general_paths_error(server, fast_calls):
    x = sm.sample_images(2).tolist()
    x[1][0] = x[1][0] + x[1][1]  # 128 values in all, as a [2, 8, 8, 1] has, but image 1 is ragged
    del x[1][1]
    raws = [json.dumps({"instances": x}).encode(), b'{"instances": [[1,2],[3],[4,5,6]]}',
            b'{"inputs": [[[[1.0]]], [[[2.0], [3.0]]]]}']
    for raw in raws:
        status, answer = assert_same_as_general(server, raw)
        assert status == 400 and json.loads(answer)["error"].startswith("input 'images': ragged lists")
    assert fast_calls == [None] * len(raws)
    with pytest.raises(Exception) as info:  # the words are json_to_numpy's
        tensors.json_to_numpy([[1, 2], [3], [4, 5, 6]], types_pb2.DT_FLOAT, "images")
    assert json.loads(post(server, raws[1])[1])["error"] == info.value.message


@pytest.mark.parametrize("raw, status, fragment", [
    (b'{"instances": [[1.0, 2.0]]}', 400, "expected shape [-1,8,8,1]"),  # shape checked as before
    (b'{"inputs": [1.5]}', 400, "expected shape [-1,8,8,1]"),
    (b'{"signature_name": "a[b", "instances": [[[[1.0]]]]}', 400, 'Serving signature key "a[b" not found.'),
    (b'{"signature_name": "nope", "instances": [[[[1.0]]]]}', 400, 'Serving signature key "nope" not found.'),
    (b'{"instances": [NaN]}', 400, "expected shape"),
    (b'{"instances": [Infinity, 1]}', 400, "expected shape"),
    (b'{"instances": [1, 2]}', 400, "expected shape"),  # ints
    (b'{"instances": []}', 400, "'instances' must be a non-empty list"),
    (b'{"inputs": []}', 400, "expected shape"),
    (b'{"instances": 5}', 400, "'instances' must be a non-empty list"),
    (b'{"inputs": 5}', 400, "expected shape"),  # a scalar
    (b'{"instances": [[1.0]], "inputs": [[1.0]]}', 400, "only one of"),
    (b'{"instances": [[1.0]], "inputs": "x"}', 400, "only one of"),
    (b'{"instances": [true]}', 400, "true is not a valid DT_FLOAT value"),  # not 1.0 (issue 15)
    (b'{"instances": ' + b'[' * 3000 + b']' * 3000 + b'}', 400, "JSON Parse error"),  # deep nesting
    (b'{"instances": [{"b64": "AAAA"}]}', 400, "images"),
])
def test_edge_bodies_get_the_general_paths_answer(server, raw, status, fragment):
    got_status, answer = assert_same_as_general(server, raw)
    assert got_status == status and fragment in json.loads(answer)["error"]


def test_exponents_negatives_and_whitespace_through_the_server(server, fast_calls):
    x = sm.sample_images(2, seed=9) - 0.5
    x[:, ::3] *= np.float32(1e-7)  # written with exponents
    text = json.dumps({"instances": x.astype(np.float64).tolist()}, indent=3).replace("e-0", "E-0").encode()
    assert b"\n" in text and b"E-0" in text and b"-0." in text
    status, answer = assert_same_as_general(server, text)
    assert status == 200 and fast_calls and same_bits(fast_calls[0], x)


def test_unknown_dtype_or_several_inputs_use_the_general_path(monkeypatch, server, fast_calls):
    x = sm.sample_images(1)
    monkeypatch.setattr(rest_api, "_FAST_DTYPES", frozenset())  # as for an int input
    status, answer = assert_same_as_general(server, json.dumps({"instances": x.tolist()}).encode())
    assert status == 200 and fast_calls == []
