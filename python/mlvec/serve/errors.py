"""The service's one error type: a status code, the request field at fault and a message.

Every 4xx answer is JSON of one shape, ``{"error": {"status": 400, "field": "k", "message": ...}}``,
so a client can tell which argument to fix without parsing prose. Anything else that escapes a
handler is a bug and answers 500 with no detail (the traceback goes to the log).
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request the service refuses: ``status`` (4xx/503), the ``field`` at fault (``None`` when
    no single field is), and a message that names it."""

    def __init__(self, status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, self.field)


def error_body(status: int, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"status": status, "field": field, "message": message}}


def bad_field(field: str, message: str, status: int = 400) -> ApiError:
    """``ApiError`` for one field, its message prefixed with the field name."""
    return ApiError(status, f"{field}: {message}", field)
