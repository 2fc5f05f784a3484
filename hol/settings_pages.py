"""The Content-Security-Policy of HOL's pages (django-csp), imported by hol.settings."""

from __future__ import annotations

# No inline script or style anywhere in HOL's pages: text an agent smuggles in cannot run. The
# admin and the Swagger UI ship inline code of their own, so they are left out.
CONTENT_SECURITY_POLICY = {
    "EXCLUDE_URL_PREFIXES": ["/admin/", "/api/docs"],
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    },
}
