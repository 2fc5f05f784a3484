"""HOL's data dir (HOL_DATA_DIR): private to the account that runs HOL, and where the secrets that
are not given in the environment are kept, one file each, so every HOL process shares them.

Settings only read these files (`read_secret`); the entry points (`manage.py`, the launcher, the
ASGI and Celery apps, the test run) call `prepare` first, which makes what is missing. Settings
that wrote on import would leave files behind for any import, `manage.py --help` included.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path

SECRET_KEY_FILE = "secret-key"  # noqa: S105 - a file name, not a key
CHECKPOINT_KEY_FILE = "audit-checkpoint-key"
CALLBACK_SECRET_FILE = "callback-secret"  # noqa: S105 - a file name, not a secret
DEMO_ACCOUNTS_FILE = "demo-accounts.json"


def data_dir_from_env() -> Path:
    """The same default as settings: `.hol/` beside manage.py."""
    default = Path(__file__).resolve().parent.parent / ".hol"
    return Path(os.environ.get("HOL_DATA_DIR", default)).resolve()


def write_private(path: Path, text: str, *, replace: bool) -> bool:
    """Write `text` to `path` with mode 600, never half-written: a temporary file in the same dir
    is linked into place. With `replace=False` an existing file wins (another process made it
    first) and False is returned."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        if replace:
            os.replace(temporary, path)
            return True
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def read_secret(data_dir: Path, name: str) -> str | None:
    try:
        return (data_dir / name).read_text().strip() or None
    except FileNotFoundError:
        return None


def prepare(data_dir: Path | None = None) -> Path:
    """Make the data dir (0700) and the secrets the environment does not give (0600 each).

    Also sets this process's umask to 077: the SQLite file and its journals, the Redis socket, log
    and traces are then private to HOL's account whoever creates them later (children inherit it)."""
    os.umask(0o077)
    data_dir = Path(data_dir or data_dir_from_env())
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    for path in data_dir.iterdir():  # files an older HOL left readable by others
        if path.is_file() and path.stat().st_mode & 0o077:
            path.chmod(0o600)
    (data_dir / "static").mkdir(mode=0o700, exist_ok=True)
    for variable, name in (
        ("HOL_SECRET_KEY", SECRET_KEY_FILE),
        ("HOL_AUDIT_CHECKPOINT_KEY", CHECKPOINT_KEY_FILE),
        ("HOL_CALLBACK_SECRET", CALLBACK_SECRET_FILE),
    ):
        if not os.environ.get(variable) and read_secret(data_dir, name) is None:
            write_private(data_dir / name, secrets.token_urlsafe(50), replace=False)
    return data_dir


def demo_passwords(data_dir: Path) -> dict[str, str]:
    try:
        return json.loads((data_dir / DEMO_ACCOUNTS_FILE).read_text())
    except FileNotFoundError:
        return {}


def save_demo_passwords(data_dir: Path, passwords: dict[str, str]) -> None:
    write_private(data_dir / DEMO_ACCOUNTS_FILE, json.dumps(passwords, indent=2, sort_keys=True) + "\n", replace=True)
