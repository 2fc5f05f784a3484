"""The API schema describes HOL's JWT authentication as simplejwt's bearer scheme."""

from __future__ import annotations

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme


class RunScopedJWTScheme(SimpleJWTScheme):
    target_class = "hol.run_scope.RunScopedJWTAuthentication"
    name = "jwtAuth"
