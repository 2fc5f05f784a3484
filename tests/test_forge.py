"""The reference agent's forge: whose repositories it pushes to with the token, the pull request it
opens (against a local HTTP server speaking the forge's API), and where the token never goes."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agents.forge import (
    Forge,
    ForgeError,
    destination_of,
    forge_from_env,
    forge_repository,
    open_pull_request,
    push_environment,
)

TOKEN = "ghp_" + "x" * 36


class ForgeApi(BaseHTTPRequestHandler):
    """Answers each POST with the next scripted (status, headers, body) and records what came."""

    script: list[tuple[int, dict[str, str], bytes]] = []
    received: list[dict] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        ForgeApi.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
        status, headers, answer = ForgeApi.script.pop(0)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def api():
    ForgeApi.script, ForgeApi.received = [], []
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), ForgeApi) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield [f"http://127.0.0.1:{server.server_address[1]}" for server in servers]
    for server in servers:
        server.shutdown()
        server.server_close()


def forge_at(url: str) -> Forge:
    return forge_from_env({"HOL_FORGE_TOKEN": TOKEN, "HOL_FORGE_API_URL": url, "HOL_FORGE_HOST": "github.com"})


def test_no_token_no_forge_and_github_by_default():
    assert forge_from_env({}) is None
    assert forge_from_env({"HOL_FORGE_TOKEN": "  "}) is None
    forge = forge_from_env({"HOL_FORGE_TOKEN": TOKEN})
    assert (forge.api_url, forge.host) == ("https://api.github.com", "github.com")
    assert TOKEN not in repr(forge)
    gitea = forge_from_env({"HOL_FORGE_TOKEN": TOKEN, "HOL_FORGE_API_URL": "https://git.example.org/api/v1/"})
    assert (gitea.api_url, gitea.host) == ("https://git.example.org/api/v1", "git.example.org")


@pytest.mark.parametrize(
    "environ",
    [
        {"HOL_FORGE_API_URL": "http://forge.example.org"},  # plain http beyond this machine
        {"HOL_FORGE_API_URL": "ftp://forge.example.org"},
        {"HOL_FORGE_API_URL": "https://user:pw@forge.example.org"},
        {"HOL_FORGE_HOST": "github.com/evil"},
        {"HOL_FORGE_TOKEN": "two words"},
    ],
)
def test_a_misconfigured_forge_is_refused_without_showing_the_token(environ):
    with pytest.raises(ForgeError) as refused:
        forge_from_env({"HOL_FORGE_TOKEN": TOKEN, **environ})
    assert TOKEN not in str(refused.value)


@pytest.mark.parametrize(
    ("url", "repository"),
    [
        ("https://github.com/acme/app", "acme/app"),
        ("https://github.com/acme/app.git", "acme/app"),
        ("https://GitHub.com/acme/app/", "acme/app"),
        ("https://github.com.evil.example/acme/app", None),
        ("https://evil.example/acme/app", None),
        ("https://x:y@github.com/acme/app", None),
        ("https://github.com:8443/acme/app", None),
        ("https://github.com/acme", None),
        ("https://github.com/acme/app/tree/main", None),
        ("https://github.com/acme/..", None),
        ("http://github.com/acme/app", None),
        ("/srv/repos/app", None),
    ],
)
def test_only_owner_name_repositories_on_the_forge_host_are_the_forge_s(url, repository):
    assert forge_repository(url, forge_from_env({"HOL_FORGE_TOKEN": TOKEN})) == repository


def test_where_a_branch_may_go():
    local = destination_of("/srv/repos/app", {"HOL_FORGE_TOKEN": TOKEN})
    assert (local.repository, local.refusal, local.git_environment) == (None, "", {})
    assert "no forge token" in destination_of("https://github.com/acme/app", {}).refusal
    assert (
        "misconfigured"
        in destination_of(
            "https://github.com/acme/app", {"HOL_FORGE_TOKEN": TOKEN, "HOL_FORGE_API_URL": "http://forge.example.org"}
        ).refusal
    )
    elsewhere = destination_of("https://evil.example/acme/app", {"HOL_FORGE_TOKEN": TOKEN})
    assert "not an owner/name repository" in elsewhere.refusal and elsewhere.git_environment == {}
    forge = destination_of("https://github.com/acme/app.git", {"HOL_FORGE_TOKEN": TOKEN})
    assert (forge.repository, forge.refusal) == ("acme/app", "")
    assert forge.git_environment == push_environment(forge.forge)


def git_header_for(url: str, environment: dict[str, str]) -> str | None:
    """What git itself would send to `url` as http.extraHeader under `environment`."""
    result = subprocess.run(
        ["git", "config", "--get-urlmatch", "http.extraHeader", url],
        env={"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "PATH": "/usr/bin:/bin", **environment},
        capture_output=True,
        text=True,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def test_git_sends_the_token_to_the_forge_host_and_nowhere_else():
    environment = push_environment(forge_from_env({"HOL_FORGE_TOKEN": TOKEN}))
    assert TOKEN not in json.dumps(environment)  # encoded, and never a command-line argument
    header = git_header_for("https://github.com/acme/app.git", environment)
    assert header.startswith("Authorization: Basic ")
    assert base64.b64decode(header.split()[-1]).decode() == f"x-access-token:{TOKEN}"
    for elsewhere in (
        "https://evil.example/acme/app.git",
        "https://github.com.evil.example/acme/app.git",
        "http://github.com/acme/app.git",
    ):
        assert git_header_for(elsewhere, environment) is None, elsewhere


def test_a_pull_request_is_opened_with_the_token(api):
    answer = {"html_url": "https://github.com/acme/app/pull/7", "number": 7}
    ForgeApi.script = [(201, {"Content-Type": "application/json"}, json.dumps(answer).encode())]
    pull = open_pull_request(
        forge_at(api[0]), "acme/app", head="hol/1234abcd", base="main", title="Fix add()", body="x" * 100_000
    )
    assert pull == answer
    (sent,) = ForgeApi.received
    assert sent["path"] == "/repos/acme/app/pulls"
    assert sent["headers"]["Authorization"] == f"Bearer {TOKEN}"
    payload = json.loads(sent["body"])
    assert (payload["title"], payload["head"], payload["base"]) == ("Fix add()", "hol/1234abcd", "main")
    assert len(payload["body"]) == 60000  # bounded


def test_a_refusal_says_the_forge_s_words(api):
    refusal = {"message": "Validation Failed", "errors": [{"message": "A pull request already exists for acme:hol/1"}]}
    ForgeApi.script = [(422, {}, json.dumps(refusal).encode())]
    with pytest.raises(ForgeError, match="422: Validation Failed; A pull request already exists"):
        open_pull_request(forge_at(api[0]), "acme/app", head="hol/1", base="main", title="t", body="b")


@pytest.mark.parametrize(
    "answer", [b"not json", b"[1, 2]", json.dumps({"number": 1}).encode(), b" " * (1024 * 1024 + 1)]
)
def test_an_answer_that_names_no_pull_request_is_an_error(api, answer):
    ForgeApi.script = [(201, {}, answer)]
    with pytest.raises(ForgeError):
        open_pull_request(forge_at(api[0]), "acme/app", head="hol/1", base="main", title="t", body="b")


def test_a_redirect_is_not_followed_so_the_token_stays(api):
    ForgeApi.script = [(307, {"Location": f"{api[1]}/steal"}, b"")]
    with pytest.raises(ForgeError, match="307"):
        open_pull_request(forge_at(api[0]), "acme/app", head="hol/1", base="main", title="t", body="b")
    assert [sent["path"] for sent in ForgeApi.received] == ["/repos/acme/app/pulls"]  # nothing reached the other


def test_an_unreachable_forge_is_an_error():
    closed = forge_at("http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(ForgeError, match="could not be reached"):
        open_pull_request(closed, "acme/app", head="hol/1", base="main", title="t", body="b", timeout=5)
