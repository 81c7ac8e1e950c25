"""HTTP for the REST clients (TF Serving's /v1 in `rest_client`, the Open Inference Protocol's /v2
in `v2_client`): one `requests.Session` per thread (keep-alive, so a client can be shared between
threads), and every failure as a `ClientError` worded alike for both, with the gRPC code of the
HTTP status. No protos here (REST clients start without TensorFlow).
"""
from __future__ import annotations

import json
import threading
from typing import Any, Sequence

import grpc
import orjson
import requests

from serving.client._common import check_timeout
from serving.errors import ClientError

DEFAULT_BASE_URL = "http://localhost:8501"
_CODE_OF_HTTP = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
                 403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND,
                 409: grpc.StatusCode.ABORTED, 429: grpc.StatusCode.RESOURCE_EXHAUSTED,
                 499: grpc.StatusCode.CANCELLED, 500: grpc.StatusCode.INTERNAL,
                 501: grpc.StatusCode.UNIMPLEMENTED, 503: grpc.StatusCode.UNAVAILABLE,
                 504: grpc.StatusCode.DEADLINE_EXCEEDED}


def check_base_url(base_url: Any) -> str:
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must start with http:// or https:// (e.g. {DEFAULT_BASE_URL!r}), "
                         f"got {base_url!r}")
    return base_url.rstrip("/")


def loads(raw: bytes) -> Any:
    """An answer body -> Python; None when it is not JSON. NaN/Infinity (which TF Serving writes
    for non-finite outputs) are not JSON to orjson, so json reads those."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw)
    except ValueError:  # includes UnicodeDecodeError
        return None


class Http:
    """The connections of one REST client to `base_url`; `close()` closes them all."""

    def __init__(self, base_url: str, timeout: float, verify: bool | str) -> None:
        self.base_url = check_base_url(base_url)
        self.timeout = check_timeout(timeout)
        if not isinstance(verify, (bool, str)):
            raise ValueError(f"verify must be a bool or a CA bundle path (str), got {verify!r}")
        self.verify = verify
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self.closed = False

    def close(self) -> None:
        self.closed = True
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for s in sessions:
            s.close()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def send(self, method: str, url: str, data: bytes | None, headers: dict[str, str] | None,
             timeout: float, what: str, ok: Sequence[int] = (200,)) -> requests.Response:
        """The response (its status one of `ok`), else ClientError: unreachable, no answer within
        `timeout` s, or the server's {"error": ...} with the HTTP status's gRPC code. `what` (the
        client's class name) is how the message names a closed client."""
        if self.closed:
            raise ValueError(f"this {what} for {self.base_url} is closed")
        try:
            response = self._session().request(method, url, data=data, timeout=timeout, verify=self.verify,
                                               headers=headers)
        except requests.exceptions.Timeout as exc:
            raise ClientError(grpc.StatusCode.DEADLINE_EXCEEDED,
                              f"no answer from {self.base_url} to {method} {url} within {timeout:g} s ({exc}); "
                              "the server may be overloaded or the model slow: raise timeout= or check "
                              "the server", target=self.base_url) from None
        except requests.exceptions.ConnectionError as exc:
            raise ClientError(grpc.StatusCode.UNAVAILABLE,
                              f"cannot reach a model server at {self.base_url} ({type(exc).__name__}); "
                              "check that the server is running and its --rest_api_port matches the "
                              "port in base_url", target=self.base_url) from None
        if response.status_code not in ok:
            raise self.error(response, url, loads(response.content))
        return response

    def error(self, response: requests.Response, url: str, payload: Any) -> ClientError:
        """The ClientError of an error answer: its {"error": message} (TF Serving's and the v2
        protocol's form), else the status and the start of the body."""
        message = payload.get("error") if isinstance(payload, dict) else None
        if not isinstance(message, str):
            message = f"HTTP {response.status_code} from {url}: {response.text[:300]}"
        code = _CODE_OF_HTTP.get(response.status_code, grpc.StatusCode.UNKNOWN)
        return ClientError(code, message, target=self.base_url, status=response.status_code)

    def json_object(self, body: bytes, url: str, api: str, status: int = 200) -> dict[str, Any]:
        """An answer's JSON object, else ClientError INTERNAL naming the `api` expected there."""
        payload = loads(body)
        if not isinstance(payload, dict):
            text = body[:200].decode("utf-8", "replace")
            raise ClientError(grpc.StatusCode.INTERNAL, f"{url} answered {status} without a JSON object "
                              f"({text!r}); is {self.base_url} a {api} port?", target=self.base_url,
                              status=status)
        return payload
