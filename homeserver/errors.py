"""The one error hierarchy: raised anywhere, rendered once by the HTTP layer.

Client-server API, "Standard error response" (spec v1.19).
"""

from __future__ import annotations


class MatrixError(Exception):
    """An error with a Matrix ``errcode`` and an HTTP status."""

    def __init__(self, status: int, errcode: str, error: str, **extra):
        super().__init__(f"{errcode}: {error}")
        self.status = status
        self.errcode = errcode
        self.error = error
        self.extra = extra

    def to_json(self) -> dict:
        body = {"errcode": self.errcode, "error": self.error}
        body.update(self.extra)
        return body


class Unavailable(MatrixError):
    """A process this one relies on (the main process, for a worker) cannot be reached: 503, so that the
    caller tries again later (a federation transaction is not answered, and so is sent again)."""

    def __init__(self, error: str):
        super().__init__(503, "M_UNKNOWN", error)


def forbidden(msg: str) -> MatrixError:
    return MatrixError(403, "M_FORBIDDEN", msg)


def not_found(msg: str = "Not found") -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", msg)


def bad_json(msg: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", msg)


def missing_param(msg: str) -> MatrixError:
    return MatrixError(400, "M_MISSING_PARAM", msg)


def invalid_param(msg: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", msg)


def too_large(msg: str) -> MatrixError:
    """413 M_TOO_LARGE: the request names more than the server handles at once (spec "Standard error response")."""
    return MatrixError(413, "M_TOO_LARGE", msg)


def unknown_token(msg: str = "Unknown access token", soft_logout: bool = False) -> MatrixError:
    return MatrixError(401, "M_UNKNOWN_TOKEN", msg, soft_logout=soft_logout)


def limit_exceeded(retry_after_ms: int) -> MatrixError:
    return MatrixError(429, "M_LIMIT_EXCEEDED", "Too many requests", retry_after_ms=retry_after_ms)


class InteractiveAuthRequired(MatrixError):
    """401 with the user-interactive auth flows body (spec "User-Interactive Authentication API")."""

    def __init__(self, body: dict):
        super().__init__(401, body.get("errcode", "M_FORBIDDEN"), body.get("error", "Authentication required"))
        self.body = body

    def to_json(self) -> dict:
        return self.body
