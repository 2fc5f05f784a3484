"""Domain errors raised by services, and the one DRF handler that turns them into JSON.

Every error body is `{"code": ..., "message": ...}` (plus `fields` for serializer errors).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class DomainError(Exception):
    status_code = status.HTTP_400_BAD_REQUEST
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class NotFound(DomainError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"


class PermissionDenied(DomainError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "permission_denied"


class Conflict(DomainError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class ValidationFailed(DomainError):
    """Input that parsed but breaks a rule (the intake gate's codes): 422."""

    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    code = "invalid"


class BadRequest(DomainError):
    code = "bad_request"


class Unauthenticated(DomainError):
    """No credentials, or credentials that do not identify an active account: 401."""

    status_code = status.HTTP_401_UNAUTHORIZED
    code = "not_authenticated"


def error_body(code: str, message: str) -> dict[str, str]:
    """The one error body every HOL endpoint answers with."""
    return {"code": code, "message": message}


def _first_message(detail: Any) -> str:
    if isinstance(detail, dict):
        for key, value in detail.items():
            inner = _first_message(value)
            return inner if key == "non_field_errors" else f"{key}: {inner}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, DomainError):
        return Response(error_body(exc.code, exc.message), status=exc.status_code)
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, drf_exceptions.ValidationError):
        response.data = {**error_body("invalid", _first_message(exc.detail)), "fields": exc.detail}
    elif isinstance(exc, drf_exceptions.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else getattr(exc, "default_code", "error")
        detail = exc.detail
        if isinstance(detail, dict) and "detail" in detail:
            # simplejwt puts its reason in `detail` and `code` (e.g. token_not_valid).
            code = str(detail.get("code", code))
            detail = detail["detail"]
        response.data = error_body(code, _first_message(detail))
    return response
