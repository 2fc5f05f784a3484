"""Settings of HOL's pages: sign-in, the Content-Security-Policy (django-csp), static files,
page size. Star-imported by hol.settings."""

from __future__ import annotations

from pathlib import Path

from hol.environment import env_int

BASE_DIR = Path(__file__).resolve().parent.parent

# People sign in on HOL's own page; agents' JWTs never open pages.
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"
# HOL's own stylesheet and script (static/hol/), served by hol.static_files.
STATICFILES_DIRS = [BASE_DIR / "static"]
# Tasks per page on the task list.
HOL_PAGE_SIZE = env_int("HOL_PAGE_SIZE", 50)

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
