"""One exception type for the whole server, and TF Serving's gRPC-code -> HTTP-status mapping.

Everything inside the server raises `ServingError(code, message)`; the gRPC layer turns it into
`context.abort(code, message)` and the REST layer into `{"error": message}` with `http_status(code)`.
"""
from __future__ import annotations

import grpc

# TF Serving cuts long error messages (e.g. a huge tensor echoed back) and marks the cut.
MAX_MESSAGE_CHARS = 1024
TRUNCATION_MARK = "...TRUNCATED"

# From TF Serving's http_rest_api_handler / util/status_util: the REST status for each gRPC code.
_HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
}


def truncate_message(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Cut `message` to at most `limit` characters, ending in "...TRUNCATED" when cut."""
    if not isinstance(message, str):
        raise TypeError(f"message must be a str, got {type(message).__name__}")
    if limit <= len(TRUNCATION_MARK):
        raise ValueError(f"limit must be > {len(TRUNCATION_MARK)}, got {limit}")
    if len(message) <= limit:
        return message
    return message[: limit - len(TRUNCATION_MARK)] + TRUNCATION_MARK


def http_status(code: grpc.StatusCode) -> int:
    """HTTP status TF Serving's REST API answers for a gRPC status code (500 for the rest)."""
    if not isinstance(code, grpc.StatusCode):
        raise TypeError(f"code must be a grpc.StatusCode (one of {[c.name for c in grpc.StatusCode]}), "
                        f"got {code!r}")
    return _HTTP_STATUS.get(code, 500)


def code_from_name(name: str) -> grpc.StatusCode:
    """`"NOT_FOUND"` -> grpc.StatusCode.NOT_FOUND; ValueError naming the valid names otherwise."""
    try:
        return grpc.StatusCode[name]
    except KeyError:
        raise ValueError(f"unknown status code name {name!r}; valid: "
                         f"{[c.name for c in grpc.StatusCode]}") from None


class ServingError(Exception):
    """An error with a gRPC status code; its message is already truncated like TF Serving's."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        if not isinstance(code, grpc.StatusCode):
            raise TypeError(f"code must be a grpc.StatusCode, got {code!r}")
        if code is grpc.StatusCode.OK:
            raise ValueError("code must not be OK: a ServingError is an error")
        self.code = code
        self.message = truncate_message(str(message))
        super().__init__(self.message)

    @property
    def http_status(self) -> int:
        return http_status(self.code)

    def __repr__(self) -> str:
        return f"ServingError({self.code.name}, {self.message!r})"


class ClientError(ServingError):
    """A failed client call (serving.Client, serving.RestClient): gRPC `code`, the server's
    `message`, the `target` asked and, over REST, the HTTP `status` actually answered
    (`http_status` falls back to TF Serving's mapping)."""

    def __init__(self, code: grpc.StatusCode, message: str, *, target: str = "",
                 status: int | None = None) -> None:
        super().__init__(code, message)
        self.target = target
        self.status = status

    @property
    def http_status(self) -> int:
        return self.status if self.status is not None else super().http_status

    def __repr__(self) -> str:
        return f"ClientError({self.code.name}, {self.message!r}, target={self.target!r})"


def invalid_argument(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def failed_precondition(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.FAILED_PRECONDITION, message)


def unavailable(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.UNAVAILABLE, message)


def as_serving_error(exc: BaseException) -> ServingError:
    """Map any exception raised while serving to a ServingError (TF errors keep their code)."""
    if isinstance(exc, ServingError):
        return exc
    code_value = getattr(exc, "error_code", None)  # tf.errors.OpError carries the canonical code
    if isinstance(code_value, int):
        for code in grpc.StatusCode:
            if code.value[0] == code_value and code is not grpc.StatusCode.OK:
                return ServingError(code, getattr(exc, "message", None) or str(exc))
    return ServingError(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
