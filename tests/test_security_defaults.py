"""Secure by default, tried as an outsider would: forge a token with any key the
repository holds, guess passwords, claim HTTPS through a header, read what a fresh data dir leaves
open; and as a newcomer would: demo accounts, adding people, the production settings."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from io import StringIO
from pathlib import Path

import jwt
import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken
from rest_framework_simplejwt.tokens import AccessToken

from approvals.management.commands.bootstrap_roles import demo_accounts
from approvals.policy import load_roles
from hol import datadir
from hol.launcher import daphne_command, trusts_proxy, wants_demo_accounts

ROOT = Path(__file__).resolve().parent.parent
WAIT_SECONDS = 90
# The fallback key HOL once shipped in its settings: a token signed with it must never pass again.
ONCE_SHIPPED_KEYS = ["hol-dev-only-secret-key-change-me"]


def hol_env(**changes: str) -> dict[str, str]:
    """The environment of a HOL process on HOL's own defaults (nothing the tester exported)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("HOL_")}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    env.update(DJANGO_SETTINGS_MODULE="hol.settings", HOL_LOG_LEVEL="WARNING", **changes)
    return env


def run_hol(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`python ARGS` in the repository, as an operator would run it."""
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=WAIT_SECONDS
    )


def run_python(source: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return run_hol(env, "-c", source)


BOOTED = ("DEBUG", "SECURE_PROXY_SSL_HEADER", "SECRET_KEY", "HOL_AUDIT_CHECKPOINT_KEY")


def boot(data_dir: Path, **env: str) -> dict:
    """Some settings of a HOL process started on `data_dir` with HOL's defaults plus `env`."""
    source = (
        "import json\nimport django\ndjango.setup()\nfrom django.conf import settings\n"
        f"print(json.dumps({{name: getattr(settings, name) for name in {BOOTED!r}}}))"
    )
    result = run_python(source, hol_env(HOL_DATA_DIR=str(data_dir), **env))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def fresh_dir():
    """A short path of its own (HOL keeps a unix socket there), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="hol-sec-") as name:
        yield Path(name) / "data"


@pytest.fixture(scope="module")
def started_dir():
    """A data dir four HOL processes started on at once, each printing the key it then read."""
    with tempfile.TemporaryDirectory(prefix="hol-sec-") as name:
        data_dir = Path(name) / "data"
        source = (
            "import sys\nfrom pathlib import Path\nfrom hol import datadir\n"
            "print(datadir.read_secret(datadir.prepare(Path(sys.argv[1])), datadir.SECRET_KEY_FILE))"
        )
        starters = [
            subprocess.Popen(
                [sys.executable, "-c", source, str(data_dir)],
                cwd=ROOT,
                env=hol_env(),
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        keys = [process.communicate(timeout=WAIT_SECONDS)[0].strip() for process in starters]
        yield data_dir, keys


@pytest.fixture(scope="module")
def default_settings(started_dir) -> dict:
    return boot(started_dir[0])


def obtain(username: str, password: str, **extra) -> object:
    return APIClient(**extra).post("/api/v1/auth/token", {"username": username, "password": password}, format="json")


# --- keys -----------------------------------------------------------------------------------------


def test_debug_is_off_unless_hol_debug_is_1(default_settings):
    assert default_settings["DEBUG"] is False


def test_settings_refuse_to_start_without_a_key_instead_of_using_a_default(fresh_dir):
    result = run_python("import django\ndjango.setup()", hol_env(HOL_DATA_DIR=str(fresh_dir)))
    assert result.returncode != 0
    assert "HOL_SECRET_KEY is not set" in result.stderr


def settings_file_strings() -> set[str]:
    """Every string literal of the settings (and the module that reads the key files)."""
    strings = set(ONCE_SHIPPED_KEYS)
    for path in (ROOT / "hol/settings.py", ROOT / "hol/datadir.py"):
        tree = ast.parse(path.read_text())
        strings |= {
            node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
        }
    return strings - {""}  # HMAC refuses an empty key outright


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_a_token_signed_with_any_string_of_the_settings_is_refused(carol_devops):
    claims = AccessToken.for_user(carol_devops).payload  # a valid token's claims, password digest included
    accepted = []
    for key in sorted(settings_file_strings()):
        forged = jwt.encode(claims, key, algorithm="HS256")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {forged}")
        if client.get("/api/v1/audit").status_code != 401:
            accepted.append(key)
    assert accepted == []


def test_the_secret_key_is_the_data_dirs_random_key_readable_by_hol_alone(settings):
    if os.environ.get("HOL_SECRET_KEY"):
        pytest.skip("HOL_SECRET_KEY is set for this run")
    key_file = settings.HOL_DATA_DIR / datadir.SECRET_KEY_FILE
    assert key_file.read_text().strip() == settings.SECRET_KEY
    assert len(settings.SECRET_KEY) >= 50
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_processes_starting_together_on_one_data_dir_share_one_key(started_dir, default_settings):
    data_dir, keys_read_by_starters = started_dir
    assert set(keys_read_by_starters) == {default_settings["SECRET_KEY"]}
    assert (data_dir / datadir.SECRET_KEY_FILE).read_text().strip() == default_settings["SECRET_KEY"]
    assert [path.name for path in data_dir.iterdir() if path.name.startswith(".")] == []  # no half-made files


def test_the_audit_checkpoint_key_is_a_secret_of_its_own(settings):
    if os.environ.get("HOL_AUDIT_CHECKPOINT_KEY"):
        pytest.skip("HOL_AUDIT_CHECKPOINT_KEY is set for this run")
    derived = hashlib.sha256(f"hol-audit-checkpoint:{settings.SECRET_KEY}".encode()).hexdigest()
    assert settings.HOL_AUDIT_CHECKPOINT_KEY not in (settings.SECRET_KEY, derived)
    key_file = settings.HOL_DATA_DIR / datadir.CHECKPOINT_KEY_FILE
    assert key_file.read_text().strip() == settings.HOL_AUDIT_CHECKPOINT_KEY
    assert key_file.stat().st_mode & 0o777 == 0o600


# --- the data dir ---------------------------------------------------------------------------------


def test_the_embedded_database_and_the_data_dir_are_private(fresh_dir):
    source = "from django.db import connection\nconnection.ensure_connection()\nconnection.close()"
    result = run_hol(hol_env(HOL_DATA_DIR=str(fresh_dir)), "manage.py", "shell", "-c", source)
    assert result.returncode == 0, result.stderr
    assert (fresh_dir / "db.sqlite3").exists()
    assert fresh_dir.stat().st_mode & 0o777 == 0o700
    readable_by_others = [path.name for path in fresh_dir.rglob("*") if path.stat().st_mode & 0o077]
    assert readable_by_others == []


def test_a_data_dir_an_older_hol_left_open_is_closed_on_start(tmp_path):
    data_dir = tmp_path / "old"
    data_dir.mkdir()
    (data_dir / "db.sqlite3").write_text("")
    data_dir.chmod(0o755)
    (data_dir / "db.sqlite3").chmod(0o644)
    datadir.prepare(data_dir)
    assert data_dir.stat().st_mode & 0o777 == 0o700
    assert (data_dir / "db.sqlite3").stat().st_mode & 0o777 == 0o600


# --- forwarded headers ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_plain_http_claiming_https_in_a_forwarded_header_is_not_secure(client, settings):
    settings.SECURE_SSL_REDIRECT = True  # as with HOL_HTTPS=1: plain HTTP is redirected to HTTPS
    response = client.get("/api/schema/", HTTP_X_FORWARDED_PROTO="https")
    assert response.status_code == 301
    assert response["Location"].startswith("https://")


def test_forwarded_headers_are_trusted_only_with_hol_trust_proxy(started_dir, default_settings):
    assert default_settings["SECURE_PROXY_SSL_HEADER"] is None
    trusting = boot(started_dir[0], HOL_TRUST_PROXY="1")
    assert trusting["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_daphne_reads_forwarded_headers_only_with_hol_trust_proxy():
    assert "--proxy-headers" not in daphne_command(3, proxy_headers=trusts_proxy({}), quiet=False)
    trusted = daphne_command(3, proxy_headers=trusts_proxy({"HOL_TRUST_PROXY": "1"}), quiet=False)
    assert "--proxy-headers" in trusted


# --- the production settings of the README --------------------------------------------------------


def readme_production_env() -> dict[str, str]:
    """The `env` block under the README's production heading."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"### Production.*?```env\n(.*?)```", text, re.S)
    assert block, "README.md has no production settings block"
    return dict(line.split("=", 1) for line in block.group(1).splitlines() if line.strip() and not line.startswith("#"))


def test_check_deploy_is_clean_for_the_readme_production_settings(fresh_dir):
    production = readme_production_env()
    assert production["HOL_HTTPS"] == "1"
    env = hol_env(HOL_DATA_DIR=str(fresh_dir), **production)
    result = run_hol(env, "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


# --- sign-in throttling ---------------------------------------------------------------------------


def test_forty_wrong_passwords_then_the_right_one_is_throttled(carol_devops):
    statuses = [obtain("carol_devops", f"guess-{n}").status_code for n in range(40)]
    assert statuses[0] == 401
    assert statuses[-1] == 429
    response = obtain("carol_devops", "pw-carol_devops")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert response.json()["code"] == "too_many_attempts"
    assert "access" not in response.json()


def test_wrong_passwords_for_one_username_from_many_addresses_lock_the_username(settings, carol_devops):
    for n in range(settings.AXES_FAILURE_LIMIT):
        obtain("carol_devops", "guess", REMOTE_ADDR=f"203.0.113.{n + 1}")
    assert obtain("carol_devops", "pw-carol_devops", REMOTE_ADDR="198.51.100.7").status_code == 429


def test_wrong_passwords_for_many_usernames_from_one_address_lock_the_address(settings, carol_devops):
    for n in range(settings.AXES_FAILURE_LIMIT):
        obtain(f"someone_{n}", "guess", REMOTE_ADDR="203.0.113.9")
    assert obtain("carol_devops", "pw-carol_devops", REMOTE_ADDR="203.0.113.9").status_code == 429
    assert obtain("carol_devops", "pw-carol_devops", REMOTE_ADDR="198.51.100.7").status_code == 200


def test_signing_in_to_ones_own_account_does_not_wipe_the_failures_against_another(
    client, settings, carol_devops, bob_tech_lead
):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        obtain("carol_devops", "guess", REMOTE_ADDR="203.0.113.9")
    own = {"username": "bob_tech_lead", "password": "pw-bob_tech_lead"}
    assert client.post("/admin/login/", own, REMOTE_ADDR="203.0.113.9").status_code == 302
    obtain("carol_devops", "guess", REMOTE_ADDR="203.0.113.9")
    assert obtain("carol_devops", "pw-carol_devops", REMOTE_ADDR="203.0.113.9").status_code == 429


def test_the_admin_login_is_throttled(client, settings, carol_devops):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/admin/login/", {"username": "carol_devops", "password": "guess"})
    response = client.post("/admin/login/", {"username": "carol_devops", "password": "pw-carol_devops"})
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert "_auth_user_id" not in client.session


# --- tokens do not outlive the credentials --------------------------------------------------------


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def refresh(token: str) -> int:
    return APIClient().post("/api/v1/auth/token/refresh", {"refresh": token}, format="json").status_code


def test_a_password_change_stops_the_accounts_access_tokens(agent_007):
    access = obtain("agent_007", "pw-agent_007").json()["access"]
    agent_007.set_password("a-new-password")
    agent_007.save()
    response = bearer(access).get("/api/v1/tasks")
    assert response.status_code == 401


def test_a_password_change_revokes_the_accounts_refresh_tokens(agent_007):
    first = obtain("agent_007", "pw-agent_007").json()["refresh"]
    second = obtain("agent_007", "pw-agent_007").json()["refresh"]
    agent_007.set_password("a-new-password")
    agent_007.save()
    assert [refresh(first), refresh(second)] == [401, 401]


def test_tokens_issued_after_the_password_change_work(agent_007):
    agent_007.set_password("a-new-password")
    agent_007.save()
    pair = obtain("agent_007", "a-new-password").json()
    assert bearer(pair["access"]).get("/api/v1/tasks").status_code == 200
    assert refresh(pair["refresh"]) == 200


def test_deactivating_an_account_revokes_its_refresh_tokens_for_good(agent_007):
    token = obtain("agent_007", "pw-agent_007").json()["refresh"]
    agent_007.is_active = False
    agent_007.save()
    agent_007.is_active = True
    agent_007.save()
    assert refresh(token) == 401
    assert BlacklistedToken.objects.filter(token__user=agent_007).count() == 1


def test_a_new_password_from_hol_user_revokes_the_tokens(agent_007):
    access = obtain("agent_007", "pw-agent_007").json()["access"]
    call_command("hol_user", "password", "agent_007", stdout=StringIO())
    assert bearer(access).get("/api/v1/tasks").status_code == 401


def test_hol_user_deactivate_stops_the_accounts_tokens(agent_007):
    pair = obtain("agent_007", "pw-agent_007").json()
    call_command("hol_user", "deactivate", "agent_007", stdout=StringIO())
    assert bearer(pair["access"]).get("/api/v1/tasks").status_code == 401
    assert refresh(pair["refresh"]) == 401


# --- demo accounts and people ---------------------------------------------------------------------


@pytest.fixture
def demo_dir(settings, tmp_path):
    settings.HOL_DATA_DIR = datadir.prepare(tmp_path / "data")
    return settings.HOL_DATA_DIR


def make_demo_accounts() -> dict[str, str]:
    call_command("bootstrap_roles", "--demo-users", stdout=StringIO())
    from django.conf import settings

    return datadir.demo_passwords(settings.HOL_DATA_DIR)


@pytest.mark.django_db
def test_each_demo_account_has_its_own_password_kept_privately(demo_dir):
    passwords = make_demo_accounts()
    assert set(passwords) == {username for username, _role in demo_accounts(load_roles())}
    assert len(set(passwords.values())) == len(passwords)
    assert (demo_dir / datadir.DEMO_ACCOUNTS_FILE).stat().st_mode & 0o777 == 0o600
    for username, password in passwords.items():
        assert obtain(username, password).status_code == 200, username


@pytest.mark.django_db
def test_no_demo_account_signs_in_with_another_ones_password(demo_dir):
    passwords = make_demo_accounts()
    assert obtain("demo_tech_lead", passwords["demo_agent"]).status_code == 401


@pytest.mark.django_db
def test_there_are_two_demo_devops_engineers_for_critical_requests(demo_dir):
    make_demo_accounts()
    devops = get_user_model().objects.filter(groups__name="devops_engineer", username__startswith="demo_")
    assert devops.count() == 2


@pytest.mark.django_db
def test_demo_accounts_keep_their_passwords_across_starts(demo_dir):
    assert make_demo_accounts() == make_demo_accounts()


@pytest.mark.django_db
def test_a_demo_account_with_a_password_hol_does_not_know_gets_a_new_one(demo_dir):
    get_user_model().objects.create_user("demo_agent", password="the-old-shared-password")
    passwords = make_demo_accounts()
    assert obtain("demo_agent", "the-old-shared-password").status_code == 401
    assert obtain("demo_agent", passwords["demo_agent"]).status_code == 200


def test_demo_accounts_only_on_the_embedded_database_unless_asked_for():
    assert wants_demo_accounts(None, {}) is True
    assert wants_demo_accounts(None, {"DATABASE_URL": "postgres://db/hol"}) is False
    assert wants_demo_accounts(True, {"DATABASE_URL": "postgres://db/hol"}) is True
    assert wants_demo_accounts(False, {}) is False


def hol_user(*args: str) -> str:
    out = StringIO()
    call_command("hol_user", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_hol_user_add_prints_a_generated_password_that_signs_in():
    output = hol_user("add", "dave", "--role", "devops_engineer", "--staff")
    password = re.search(r"password \(shown once\): (\S+)", output).group(1)
    assert obtain("dave", password).status_code == 200
    dave = get_user_model().objects.get(username="dave")
    assert dave.is_staff
    assert list(dave.groups.values_list("name", flat=True)) == ["devops_engineer"]


@pytest.mark.django_db
def test_hol_user_refuses_an_unknown_role():
    with pytest.raises(CommandError, match="unknown role"):
        hol_user("add", "mallory", "--role", "root")
    assert not get_user_model().objects.filter(username="mallory").exists()


def test_hol_user_list_shows_roles_and_inactive_accounts(agent_007, bob_tech_lead):
    agent_007.is_active = False
    agent_007.save()
    lines = hol_user("list").splitlines()
    assert "agent_007\tagent\tinactive" in lines
    assert "bob_tech_lead\ttech_lead\tstaff" in lines


# --- the admin's door -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_login_page_tells_how_demo_accounts_sign_in(client, demo_dir):
    make_demo_accounts()
    page = client.get("/admin/login/").content.decode()
    assert "demo_devops_engineer_2" in page
    assert "demo-accounts.json" in page
    assert not any(password in page for password in datadir.demo_passwords(demo_dir).values())


@pytest.mark.django_db
def test_the_admin_login_page_mentions_no_demo_accounts_when_there_are_none(client, demo_dir):
    assert "Demo accounts" not in client.get("/admin/login/").content.decode()


@pytest.mark.django_db
def test_the_admin_is_titled_hol(client):
    assert "<title>Log in | HOL admin</title>" in client.get("/admin/login/").content.decode()


# --- ./bin/hol manage -----------------------------------------------------------------------------


def test_hol_manage_reads_the_env_file(tmp_path):
    data_dir = tmp_path / "from-env-file"
    env_file = tmp_path / ".env"
    env_file.write_text(f"# HOL settings\nexport HOL_DATA_DIR='{data_dir}'\n")
    result = run_hol(hol_env(HOL_ENV_FILE=str(env_file)), "-m", "hol.launcher", "manage", "check")
    assert result.returncode == 0, result.stderr
    assert (data_dir / datadir.SECRET_KEY_FILE).exists()
