"""Safe defaults of `python -m serving` as a real process: loopback-only bind, TLS, symlinks.

One server for the module, started the way a user would: no --host, gRPC TLS from a certificate
made here (--ssl_cert_file/--ssl_key_file), REST on. Its model `linked` has four versions:
1 a real folder, 2 a symlink to a SavedModel outside the base path, 3 a real folder whose
`variables/` links outside, 4 a symlink to version 1 (inside). What the server does: a version
that is, or contains, a symlink resolving outside the model's base path is refused; it never
loads, its status is END with PERMISSION_DENIED naming the link, and the other versions serve.
Links that stay inside the base path are followed.
"""
from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess

import grpc
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import (get_model_status_pb2, model_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

import _reliability as rel
import _serving_models as sm

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI to make a certificate")
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("security")
    key, cert = root / "key.pem", root / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    base, outside = root / "models" / "linked", root / "elsewhere"
    sm.write_model(str(base), 1, bias=1.0)
    sm.write_model(str(outside), 2, bias=2.0)
    os.symlink(outside / "2", base / "2")
    sm.write_model(str(base), 3, bias=3.0)
    shutil.move(str(base / "3" / "variables"), str(outside / "variables3"))
    os.symlink(outside / "variables3", base / "3" / "variables")
    os.symlink("1", base / "4")  # relative, stays inside the base path
    (root / "models.config").write_text(
        f'model_config_list {{ config {{ name: "linked" base_path: "{base}" model_platform: "tensorflow" '
        'model_version_policy { all {} } } }')
    srv = rel.ServerProcess(root, [f"--model_config_file={root / 'models.config'}", f"--ssl_cert_file={cert}",
                                   f"--ssl_key_file={key}"], name="security")
    with srv:
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(f"localhost:{srv.grpc_port}", creds) as channel:
            srv.channel = channel
            yield srv


def predict(name: str, version: int | None = None) -> predict_pb2.PredictRequest:
    req = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=name))
    if version is not None:
        req.model_spec.version.value = version
    req.inputs["images"].CopyFrom(tf.make_tensor_proto(sm.sample_images(1)))
    return req


def listening_addresses(port: int) -> set[str]:
    """Local IPv4/IPv6 addresses with a socket in LISTEN state on `port` (from /proc/net/tcp*)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            rows = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            addr, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:  # 0A = TCP_LISTEN
                raw = bytes.fromhex(addr)
                # /proc prints each 32-bit word in host (little-endian) order
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                ip = ipaddress.ip_address(socket.inet_ntop(socket.AF_INET if width == 8 else socket.AF_INET6, words))
                found.add(str(getattr(ip, "ipv4_mapped", None) or ip))  # grpc listens on ::ffff:127.0.0.1
    return found


def non_loopback_address() -> str | None:
    """This machine's address on its default route (no packet is sent), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks the route
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


def test_binds_loopback_only_by_default(server):
    assert "--host" not in " ".join(server.argv)
    for port in (server.grpc_port, server.rest_port):
        assert listening_addresses(port) == {"127.0.0.1"}, port
    addr = non_loopback_address()
    if addr is not None:  # reachable on loopback, refused on the machine's other interface
        with socket.create_server(("0.0.0.0", 0)) as control:  # control: that address does take connections
            socket.create_connection((addr, control.getsockname()[1]), timeout=3).close()
        for port in (server.grpc_port, server.rest_port):
            with pytest.raises(OSError):
                socket.create_connection((addr, port), timeout=3).close()
    assert requests.get(f"{server.rest_url}/v1/models/linked", timeout=10).status_code == 200


def test_tls_works_and_a_plaintext_client_is_refused(server):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel)
    assert stub.Predict(predict("linked", 1), timeout=30).model_spec.version.value == 1
    with grpc.insecure_channel(server.target) as plain:
        with pytest.raises(grpc.RpcError) as info:
            prediction_service_pb2_grpc.PredictionServiceStub(plain).Predict(predict("linked"), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_symlinks_out_of_the_base_path_are_refused(server):
    status = model_service_pb2_grpc.ModelServiceStub(server.channel).GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec=model_pb2.ModelSpec(name="linked")), timeout=30)
    by_version = {s.version: s for s in status.model_version_status}
    assert sorted(by_version) == [1, 2, 3, 4]
    assert by_version[1].state == AVAILABLE and by_version[4].state == AVAILABLE  # inside: followed
    for v, link in ((2, "2"), (3, "3/variables")):
        s = by_version[v]
        assert s.state == END and s.status.error_code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        assert f": {link} is a symlink that leads outside the model base path" in s.status.error_message
        # where it leads is not said: a base_path of /proc listed other processes' working folders
        assert "elsewhere" not in s.status.error_message and "elsewhere" not in server.log()
    stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel)
    for v in (2, 3):
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(predict("linked", v), timeout=30)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    # version 4 is version 1 through an inside link: same weights, same bias
    assert stub.Predict(predict("linked"), timeout=30).model_spec.version.value == 4
    rest = requests.get(f"{server.rest_url}/v1/models/linked/versions/2", timeout=10).json()
    assert rest["model_version_status"][0]["status"]["error_code"] == "PERMISSION_DENIED"
    assert "Refusing to load" in server.log() and rel.unexpected_tracebacks(server.log()) == []
