"""Pushing a branch to a forge and opening its pull request (GitHub's REST API, which Gitea and
Forgejo also speak for this call), for the reference agent. Standard library only.

Configured in the agent's environment (pass the token through with HOL_AGENT_ENV_PASSTHROUGH):

- `HOL_FORGE_TOKEN`: a token that may push to the repository and open pull requests on it;
- `HOL_FORGE_API_URL`: the forge's API (default https://api.github.com; https, or http on loopback);
- `HOL_FORGE_HOST`: the host whose https repositories the token belongs to (default github.com
  for api.github.com, else the API's host).

The token goes only to that host: git gets it as an `http.https://<host>/.extraHeader` scoped to
the host (through GIT_CONFIG_* variables, never on a command line), and the API call refuses
redirects, so a forge cannot hand it on."""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

DEFAULT_API_URL = "https://api.github.com"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
MAX_ANSWER_BYTES = 1024 * 1024
MAX_TITLE_CHARS = 250
MAX_BODY_CHARS = 60000
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")


class ForgeError(Exception):
    """The forge is misconfigured or refused a call; the message says which, without the token."""


@dataclass(frozen=True)
class Forge:
    api_url: str
    host: str
    token: str = ""

    def __repr__(self) -> str:  # never the token
        return f"Forge(api_url={self.api_url!r}, host={self.host!r})"


def forge_from_env(environ: dict[str, str] | None = None) -> Forge | None:
    """The configured forge, or None when no token is set."""
    environ = os.environ if environ is None else environ
    token = environ.get("HOL_FORGE_TOKEN", "").strip()
    if not token:
        return None
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in token):
        raise ForgeError("HOL_FORGE_TOKEN holds characters a token cannot have")
    api_url = (environ.get("HOL_FORGE_API_URL") or DEFAULT_API_URL).strip().rstrip("/")
    parts = urlsplit(api_url)
    hostname = (parts.hostname or "").lower()
    if not hostname or parts.username or parts.password or parts.query or parts.fragment:
        raise ForgeError(f"HOL_FORGE_API_URL {api_url!r} is not a plain URL")
    if parts.scheme != "https" and not (parts.scheme == "http" and hostname in LOOPBACK):
        raise ForgeError("HOL_FORGE_API_URL must be https (http only on this machine's loopback)")
    host = (environ.get("HOL_FORGE_HOST") or ("github.com" if hostname == "api.github.com" else hostname)).strip()
    if not _NAME.fullmatch(host):
        raise ForgeError(f"HOL_FORGE_HOST {host!r} is not a host name")
    return Forge(api_url=api_url, host=host.lower(), token=token)


def forge_repository(repo_url: str, forge: Forge) -> str | None:
    """`owner/name` of an https repository URL on the forge's host, else None."""
    parts = urlsplit(repo_url)
    if parts.scheme != "https" or (parts.hostname or "").lower() != forge.host or parts.port:
        return None
    if parts.username or parts.password or parts.query or parts.fragment:
        return None
    segments = parts.path.strip("/").removesuffix(".git").split("/")
    if len(segments) != 2 or not all(_NAME.fullmatch(s) and s not in (".", "..") for s in segments):
        return None
    return "/".join(segments)


def push_environment(forge: Forge) -> dict[str, str]:
    """Environment for a `git push` that authenticates to the forge's host, and to nothing else."""
    credentials = base64.b64encode(f"x-access-token:{forge.token}".encode()).decode()
    return {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"http.https://{forge.host}/.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: Basic {credentials}",
    }


@dataclass(frozen=True)
class Destination:
    """Where a checkout's branch may go: for a repository on the configured forge, the forge and
    its `owner/name` there; for any other remote, why nothing goes there (`refusal`). A local
    repository has neither and needs no forge."""

    forge: Forge | None = None
    repository: str | None = None
    refusal: str = ""

    @property
    def git_environment(self) -> dict[str, str]:
        """What git needs to clone from and push to it: the forge's token, or nothing."""
        return push_environment(self.forge) if self.forge and self.repository else {}


def destination_of(source: str, environ: dict[str, str] | None = None) -> Destination:
    if source.startswith("/"):
        return Destination()
    try:
        forge = forge_from_env(environ)
    except ForgeError as error:
        return Destination(refusal=f"the forge is misconfigured: {error}")
    if forge is None:
        return Destination(refusal="no forge token configured (HOL_FORGE_TOKEN)")
    repository = forge_repository(source, forge)
    if repository is None:
        return Destination(refusal=f"{source} is not an owner/name repository on the forge's host {forge.host}")
    return Destination(forge=forge, repository=repository)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # a redirect is answered as the error it then is: the token stays here


def open_pull_request(
    forge: Forge, repository: str, *, head: str, base: str, title: str, body: str, timeout: float = 30
) -> dict:
    """POST /repos/{owner}/{name}/pulls; returns the forge's answer (`html_url`, `number`)."""
    owner, name = repository.split("/")
    url = f"{forge.api_url}/repos/{quote(owner, safe='')}/{quote(name, safe='')}/pulls"
    payload = {"title": title[:MAX_TITLE_CHARS], "head": head, "base": base, "body": body[:MAX_BODY_CHARS]}
    # The scheme is https (or http on loopback): forge_from_env checked it.
    request = urllib.request.Request(  # noqa: S310
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {forge.token}",
            "Accept": "application/vnd.github+json",
            "Content-Type": "application/json",
            "User-Agent": "hol-reference-agent",
        },
    )
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=timeout) as response:
            raw = response.read(MAX_ANSWER_BYTES + 1)
    except urllib.error.HTTPError as error:
        detail = _message(error.read(MAX_ANSWER_BYTES))
        raise ForgeError(f"the forge answered {error.code}" + (f": {detail}" if detail else "")) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ForgeError(f"the forge could not be reached: {reason}") from None
    if len(raw) > MAX_ANSWER_BYTES:
        raise ForgeError("the forge's answer is larger than 1 MiB")
    try:
        answer = json.loads(raw)
    except ValueError:
        raise ForgeError("the forge's answer is not JSON") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("html_url"), str):
        raise ForgeError("the forge's answer names no pull request")
    return answer


def _message(raw: bytes) -> str:
    """The forge's own words about a refusal (GitHub: message and errors[].message), shortened."""
    try:
        answer = json.loads(raw)
    except ValueError:
        return ""
    if not isinstance(answer, dict):
        return ""
    words = [str(answer.get("message") or "")]
    for error in answer.get("errors") or []:
        if isinstance(error, dict) and error.get("message"):
            words.append(str(error["message"]))
    return "; ".join(w for w in words if w)[:300]
