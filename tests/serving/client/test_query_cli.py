"""zoo-query against a real `python -m serving` serving the committed, trained saved_models/digits."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from serving.client.cli import main
from cnnzoo.net import free_ports
from serving.server.process import ServerProcess

ROOT = Path(__file__).resolve().parents[3]
DIGITS = ROOT / "saved_models" / "digits"
ZOO_QUERY = Path(sys.executable).parent / "zoo-query"  # the console script of this environment


@pytest.fixture(scope="module")
def server(tmp_path_factory, subprocess_env):
    from serving import Client
    with ServerProcess(tmp_path_factory.mktemp("query_server"),
                       ["--model_name", "digits", "--model_base_path", str(DIGITS),
                        "--file_system_poll_wait_seconds", "0"], env=subprocess_env) as server:
        with Client(server.target, timeout=30) as c:
            c.wait_until_available("digits", timeout=60)
        yield {"grpc": ["--server", server.target], "rest": ["--rest", server.rest_url]}


@pytest.fixture(scope="module")
def files(tmp_path_factory, digits):
    """Held-out digits as a 32x32 grey PNG, an 8x8 RGB JPEG, an .npz, and a file that is no image."""
    d = tmp_path_factory.mktemp("query_files")
    pixels = [(digits.x_test[i, :, :, 0] * 255).astype(np.uint8) for i in range(2)]
    png, jpg = d / "first.png", d / "second.jpg"
    Image.fromarray(pixels[0]).resize((32, 32), Image.Resampling.NEAREST).save(png)
    Image.fromarray(pixels[1]).convert("RGB").save(jpg, quality=100)
    npz = d / "test.npz"
    np.savez(npz, x_test=digits.x_test, y_test=digits.y_test)
    # The same images as 8-bit pixels (how MNIST-style files store them), and as 0..255 floats.
    as_uint8 = np.round(digits.x_test * 255).astype(np.uint8)
    np.savez(d / "uint8.npz", x_test=as_uint8, y_test=digits.y_test)
    np.savez(d / "float255.npz", x_test=as_uint8.astype(np.float32), y_test=digits.y_test)
    np.savez(d / "unlabelled.npz", images=as_uint8[:5])
    (d / "bad.png").write_text("not an image")
    np.savez(d / "wrong.npz", x_test=np.zeros((3, 5, 5, 1), np.float32))
    return {"png": str(png), "jpg": str(jpg), "npz": str(npz), "uint8": str(d / "uint8.npz"),
            "float255": str(d / "float255.npz"), "unlabelled": str(d / "unlabelled.npz"),
            "bad": str(d / "bad.png"),
            "wrong": str(d / "wrong.npz"), "labels": [int(y) for y in digits.y_test[:2]]}


@pytest.mark.parametrize("api", ["grpc", "rest"])
def test_images_are_resized_and_top_k_printed(server, files, capsys, api):
    assert main([*server[api], "--model-name", "digits", "--top-k", "2", files["png"], files["jpg"]]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [files["png"], files["jpg"]]
    for line, label in zip(lines, files["labels"]):
        tops = line.split(": ", 1)[1].split("  ")
        assert len(tops) == 2 and tops[0].startswith(f"{label} (")  # the trained model gets both right
        assert 0.5 < float(tops[0].split("(")[1].rstrip(")")) <= 1.0


@pytest.mark.parametrize("api", ["grpc", "rest"])
def test_bytes_lets_the_server_decode_and_resize(server, files, capsys, api):
    assert main([*server[api], "--model-name", "digits", "--bytes", "--top-k", "1", files["png"], files["jpg"]]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(": ")[1].split(" (")[0] for line in lines] == [str(y) for y in files["labels"]]


def test_json_and_npz_accuracy(server, files, capsys):
    assert main([*server["rest"], "--model-name", "digits", "--version", "1", "--json", "--npz", files["npz"]]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"] == "digits" and doc["images"] == 270 and doc["accuracy"] > 0.9
    assert "results" not in doc  # per-image results are asked for with --details
    assert main([*server["rest"], "--model-name", "digits", "--json", "--details", "--npz", files["npz"]]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["results"]) == 270 and doc["accuracy"] > 0.9
    first = doc["results"][0]
    assert first["input"] == "test.npz[0]" and len(first["top_k"]) == 3
    probs = [t["probability"] for t in first["top_k"]]
    assert probs == sorted(probs, reverse=True) and first["top_k"][0]["class"] == str(first["top_k"][0]["index"])


def _accuracy_line(out: str) -> float:
    first = out.splitlines()[0]
    assert first.startswith("accuracy: ") and "on 270 labelled images" in first, out[:300]
    return float(first.split()[1])


@pytest.mark.parametrize("api", ["grpc", "rest"])
def test_uint8_and_float_npz_give_the_same_accuracy(server, files, capsys, api):
    """0..255 uint8 images are scaled as training data is, not sent as 0..255 floats."""
    assert main([*server[api], "--model-name", "digits", "--npz", files["npz"]]) == 0
    as_float = _accuracy_line(capsys.readouterr().out)
    assert main([*server[api], "--model-name", "digits", "--npz", files["uint8"]]) == 0
    as_uint8 = _accuracy_line(capsys.readouterr().out)
    assert as_float > 0.9 and as_uint8 == as_float


def test_npz_prints_the_summary_first_and_details_on_request(server, files, capsys):
    assert main([*server["grpc"], "--model-name", "digits", "--npz", files["uint8"]]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("accuracy: ") and "--details" in lines[1]
    assert main([*server["grpc"], "--model-name", "digits", "--details", "--top-k", "1", "--npz", files["uint8"]]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("accuracy: ") and len(lines) == 1 + 270
    assert lines[1].startswith("uint8.npz[0]: ")
    assert main([*server["grpc"], "--model-name", "digits", "--npz", files["unlabelled"]]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("5 images from ") and "no labels" in lines[0] and len(lines) == 2


@pytest.mark.parametrize("api", ["grpc", "rest"])
def test_status_and_metadata(server, capsys, api):
    assert main([*server[api], "--model-name", "digits", "status"]) == 0
    assert capsys.readouterr().out.strip() == "digits version 1: AVAILABLE"
    assert main([*server[api], "--model-name", "digits", "metadata"]) == 0
    text = capsys.readouterr().out
    assert "signature serving_default (tensorflow/serving/predict)" in text
    assert "input  images: DT_FLOAT [-1, 8, 8, 1]" in text
    assert main([*server[api], "--model-name", "digits", "--json", "status"]) == 0
    assert json.loads(capsys.readouterr().out)["versions"][0]["state"] == "AVAILABLE"


def _bad_cases(files: dict, server: dict) -> dict[str, tuple[list[str], int, str]]:
    down = f"127.0.0.1:{free_ports(1)[0]}"
    g = server["grpc"]
    return {
        "missing file": ([*g, "--model-name", "digits", "/no/such.png"], 2, "no such file"),
        "not an image": ([*g, "--model-name", "digits", files["bad"]], 2, "not a readable PNG/JPEG"),
        "server down": (["--server", down, "--model-name", "digits", files["png"]], 1,
                        f"cannot reach a model server at {down}"),
        "rest down": (["--rest", f"http://{down}", "--model-name", "digits", "status"], 1, "cannot reach"),
        "unknown model": ([*g, "--model-name", "nope", files["png"]], 1, "NOT_FOUND"),
        "unknown version": ([*server["rest"], "--model-name", "digits", "--version", "7", "status"], 1, "version 7"),
        "unknown label": ([*g, "--model-name", "digits", "--label", "beta", files["png"]], 1, "label: beta"),
        "no --model": ([*g, "status"], 2, "--model"),
        "no images": ([*g, "--model-name", "digits"], 2, "give IMAGE files"),
        "images and npz": ([*g, "--model-name", "digits", "--npz", files["npz"], files["png"]], 2, "not both"),
        "npz key": ([*g, "--model-name", "digits", "--npz", files["npz"], "--npz-key", "zz"], 2, "--npz-key 'zz'"),
        "npz shape": ([*g, "--model-name", "digits", "--npz", files["wrong"]], 2, "[N,8,8,1]"),
        "npz not npz": ([*g, "--model-name", "digits", "--npz", files["bad"]], 2, "not a .npz"),
        "npz 0..255 floats": ([*g, "--model-name", "digits", "--npz", files["float255"]], 2, "divide by 255"),
        "details without npz": ([*g, "--model-name", "digits", "--details", files["png"]], 2, "--details"),
        "top-k": ([*g, "--model-name", "digits", "--top-k", "0", files["png"]], 2, "--top-k"),
        "bad label syntax": ([*g, "--model-name", "digits", "--label", "a-b", "status"], 2, "label"),
        "server is a url": (["--server", "http://x:1", "--model-name", "digits", "status"], 2, "use --rest"),
        "rest not a url": (["--rest", "x:1", "--model-name", "digits", "status"], 2, "--rest takes a URL"),
        "both endpoints": ([*g, *server["rest"], "--model-name", "digits", "status"], 2, "not allowed"),
        "bytes with npz": ([*g, "--model-name", "digits", "--bytes", "--npz", files["npz"]], 2, "--bytes"),
        "bytes bad image": ([*g, "--model-name", "digits", "--bytes", files["bad"]], 1, "INVALID_ARGUMENT"),
        "unknown signature": ([*g, "--model-name", "digits", "--signature", "zz", files["png"]], 2,
                              "no signature 'zz'"),
    }


CASES = ["missing file", "not an image", "server down", "rest down", "unknown model", "unknown version",
         "unknown label", "no --model", "no images", "images and npz", "npz key", "npz shape",
         "npz not npz", "npz 0..255 floats", "details without npz", "top-k", "bad label syntax",
         "server is a url", "rest not a url", "both endpoints",
         "bytes with npz", "bytes bad image", "unknown signature"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_stderr_line_and_nonzero_exit(server, files, capsys, case):
    argv, code, text = _bad_cases(files, server)[case]
    assert main(argv) == code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo-query: error: "), captured.err
    assert text in lines[0] and captured.out == ""


def test_console_script_errors_have_no_traceback(files, subprocess_env):
    """The installed entry point, in a fresh process: a dead server is one line and exit 1."""
    assert ZOO_QUERY.exists(), f"{ZOO_QUERY} missing: pip install -e ."
    down = f"127.0.0.1:{free_ports(1)[0]}"
    result = subprocess.run([str(ZOO_QUERY), "--server", down, "--model-name", "digits", files["png"]],
                            capture_output=True, text=True, env=subprocess_env, timeout=120)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "Traceback" not in result.stderr
    assert down in result.stderr


def test_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "status" in out and "--npz" in out and "--rest" in out


def test_rest_calls_run_without_tensorflow(server, files, subprocess_env):
    """`zoo-query --rest` (status, and a prediction from a uint8 npz), and `--protocol v2` over REST
    and gRPC, in a fresh process: real answers, and neither TensorFlow nor Keras is imported for
    them (v2 over gRPC fails this if the v2 client reaches TF Serving's protos)."""
    v2 = ["--protocol", "v2", "--model-name", "digits"]
    code = ("import sys\nfrom serving.client.cli import main\n"
            f"rcs = [main({[*server['rest'], '--model', 'digits', 'status']!r}),\n"
            f"       main({[*server['rest'], '--model', 'digits', '--npz', files['uint8']]!r}),\n"
            f"       main({[*server['rest'], *v2, 'status']!r}),\n"
            f"       main({[*server['grpc'], *v2, '--npz', files['uint8']]!r})]\n"
            "print(rcs, sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=subprocess_env, timeout=120)
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "digits version 1: AVAILABLE" and lines[1].startswith("accuracy: 0.9"), result.stderr
    assert lines[3] == "digits version 1: AVAILABLE" and lines[4] == lines[1], result.stdout + result.stderr
    assert lines[-1] == "[0, 0, 0, 0] []", result.stdout + result.stderr


# ------------------------------------------------------------------ --protocol v2 (Open Inference Protocol)
# All of these fail before zoo-query had --protocol (a usage error, exit 2).

def _out(argv, capsys) -> str:
    assert main(argv) == 0, capsys.readouterr().err
    return capsys.readouterr().out


@pytest.mark.parametrize("api", ["grpc", "rest"])
def test_v2_prints_what_tf_serving_s_api_prints(server, files, capsys, api):
    """The same top-k lines (classes and probabilities), image files and an npz with --details."""
    for args in (["--top-k", "3", files["png"], files["jpg"]],
                 ["--details", "--version", "1", "--npz", files["uint8"]]):
        v1 = _out([*server[api], "--model-name", "digits", *args], capsys)
        v2 = _out([*server[api], "--protocol", "v2", "--model-name", "digits", *args], capsys)
        assert v2 == v1 and v1.count("\n") >= 2
    assert _out([*server[api], "--protocol", "tfserving", "--model-name", "digits", files["png"]], capsys) \
        == _out([*server[api], "--model-name", "digits", files["png"]], capsys)  # tfserving is the default


def test_v2_bytes_over_rest_lets_the_server_decode(server, files, capsys):
    out = _out([*server["rest"], "--protocol", "v2", "--model-name", "digits", "--bytes", "--top-k", "1",
                files["png"], files["jpg"]], capsys)
    predicted = [line.split(": ")[1].split(" (")[0] for line in out.strip().splitlines()]
    assert predicted == [str(y) for y in files["labels"]]


@pytest.mark.parametrize("api", ["grpc", "rest"])
def test_v2_status_and_metadata(server, capsys, api):
    v2 = [*server[api], "--protocol", "v2", "--model-name", "digits"]
    assert _out([*v2, "status"], capsys).strip() == "digits version 1: AVAILABLE"
    assert _out([*v2, "--version", "1", "status"], capsys).strip() == "digits version 1: AVAILABLE"
    text = _out([*v2, "metadata"], capsys)
    assert text.startswith("model digits versions 1 (tensorflow_savedmodel)\n  signature serving_default\n")
    assert "input  images: FP32 [-1, 8, 8, 1]" in text and "output probabilities: FP32 [-1, 10]" in text
    meta = json.loads(_out([*v2, "--json", "metadata"], capsys))  # the protocol's own field names
    assert set(meta) == {"name", "versions", "platform", "inputs", "outputs"} and meta["versions"] == ["1"]


def test_v2_metadata_of_another_signature_over_rest(server, capsys):
    text = _out([*server["rest"], "--protocol", "v2", "--model-name", "digits", "--signature", "serving_bytes",
                 "metadata"], capsys)
    assert "signature serving_bytes" in text and "BYTES" in text


V2_BAD = {  # argv after the endpoint, exit code, text in the one stderr line
    "unknown model": (["--model-name", "nope", "status"], 1, "NOT_FOUND"),
    "unknown version": (["--model-name", "digits", "--version", "7", "status"], 1, "NOT_FOUND"),
    "unknown model predict": (["--model-name", "nope", "PNG"], 1, "NOT_FOUND"),
    "unknown signature": (["--model-name", "digits", "--signature", "zz", "PNG"], None, "zz"),
}


@pytest.mark.parametrize("api", ["grpc", "rest"])
@pytest.mark.parametrize("case", sorted(V2_BAD))
def test_v2_bad_input_is_one_stderr_line(server, files, capsys, api, case):
    argv, code, text = V2_BAD[case]
    argv = [files["png"] if a == "PNG" else a for a in argv]
    if case == "unknown signature" and api == "grpc":  # v2 gRPC metadata cannot name a signature
        code, text = 2, "use --rest URL for --signature or --bytes"
    rc = main([*server[api], "--protocol", "v2", *argv])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo-query: error: ") and text in lines[0], captured.err
    assert rc == (code if code is not None else 1) and captured.out == ""


@pytest.mark.parametrize("endpoint", ["--server", "--rest"])
def test_v2_server_down_names_the_address(files, capsys, endpoint):
    down = f"127.0.0.1:{free_ports(1)[0]}"
    target = down if endpoint == "--server" else f"http://{down}"
    assert main([endpoint, target, "--protocol", "v2", "--model-name", "digits", files["png"]]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("zoo-query: error: UNAVAILABLE") and f"cannot reach a model server at {target}" in err


def test_v2_protocol_flag_is_checked(capsys):
    assert main(["--protocol", "v3", "--model-name", "digits", "status"]) == 2
    err = capsys.readouterr().err
    assert "--protocol" in err and "v2" in err and len(err.strip().splitlines()) == 1
