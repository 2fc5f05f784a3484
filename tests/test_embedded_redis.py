"""The embedded Redis is one real server that separate HOL processes share: a message sent
from one process (Channels layer, Celery broker) arrives in another. Importing the settings starts
none; the entry points (daphne's ASGI app, the Celery worker and Beat, the launcher) do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import redis

from hol import datadir, embedded_redis
from tests.processes import stop_and_remove

ROOT = Path(__file__).resolve().parent.parent
WAIT_SECONDS = 90


def hol_env(data_dir: Path) -> dict[str, str]:
    """A HOL process on the embedded defaults: no DATABASE_URL / REDIS_URL, its data dir is ours."""
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DJANGO_SETTINGS_MODULE="hol.settings", HOL_DATA_DIR=str(data_dir), HOL_LOG_LEVEL="WARNING")
    return env


def hol_python(data_dir: Path, source: str, *args: str, prelude: str = "") -> subprocess.Popen:
    """A Python process with Django set up on `data_dir`, as an entry point sets it up."""
    prelude = prelude or (
        "import django\ndjango.setup()\nfrom django.conf import settings\n"
        "from hol.embedded_redis import start_if_embedded\nstart_if_embedded()\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", prelude + textwrap.dedent(source), *args],
        cwd=ROOT,
        env=hol_env(data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_line(process: subprocess.Popen) -> str:
    line = process.stdout.readline()
    if not line:
        _, stderr = process.communicate(timeout=WAIT_SECONDS)
        pytest.fail(f"HOL process exited early ({process.returncode}):\n{stderr}")
    return line.strip()


def finish(process: subprocess.Popen) -> str:
    stdout, stderr = process.communicate(timeout=WAIT_SECONDS)
    assert process.returncode == 0, stderr
    return stdout.strip()


@pytest.fixture(scope="module")
def redis_dir():
    """A private data dir (short path: unix socket paths are limited to ~100 bytes) with HOL's
    embedded Redis started on its socket; the server is stopped afterwards."""
    data_dir = datadir.prepare(Path(tempfile.mkdtemp(prefix="hol-redis-")).resolve())
    embedded_redis.ensure_running(data_dir / "redis.sock")
    yield data_dir
    stop_and_remove(data_dir)


def server_pid(data_dir: Path) -> int:
    return int((data_dir / "redis.pid").read_text().strip())


def test_embedded_redis_is_a_real_server_on_the_private_socket(redis_dir):
    client = redis.Redis(unix_socket_path=str(redis_dir / "redis.sock"))
    assert client.ping() is True
    assert client.info("server")["process_id"] == server_pid(redis_dir)
    assert oct((redis_dir / "redis.sock").stat().st_mode & 0o777) == oct(0o700)


def test_hol_processes_use_the_running_server_instead_of_starting_another(redis_dir):
    pid_before = server_pid(redis_dir)
    process = hol_python(redis_dir, "print(settings.CHANNEL_REDIS_HOST)\nprint(settings.CELERY_BROKER_URL)")
    assert finish(process).splitlines() == [
        f"unix://{redis_dir / 'redis.sock'}",
        f"redis+socket://{redis_dir / 'redis.sock'}",
    ]
    assert server_pid(redis_dir) == pid_before


def test_channel_layer_message_sent_in_one_process_is_received_in_another(redis_dir):
    receiver = hol_python(
        redis_dir,
        """
        import asyncio, json
        from channels.layers import get_channel_layer

        async def main():
            layer = get_channel_layer()
            channel = await layer.new_channel()
            await layer.group_add("dashboard-test", channel)
            print("ready", flush=True)
            message = await asyncio.wait_for(layer.receive(channel), 60)
            print(json.dumps(message), flush=True)

        asyncio.run(main())
        """,
    )
    assert read_line(receiver) == "ready"
    sender = hol_python(
        redis_dir,
        """
        import asyncio, os, sys
        from channels.layers import get_channel_layer

        message = {"type": "queue.changed", "sender_pid": os.getpid(), "text": sys.argv[1]}
        asyncio.run(get_channel_layer().group_send("dashboard-test", message))
        print(os.getpid())
        """,
        "work order 42 claimed",
    )
    sender_pid = int(finish(sender))
    received = json.loads(finish(receiver))
    assert received == {"type": "queue.changed", "sender_pid": sender_pid, "text": "work order 42 claimed"}
    assert sender_pid != receiver.pid


def test_celery_broker_url_carries_a_message_between_processes(redis_dir):
    consumer = hol_python(
        redis_dir,
        """
        import json
        from kombu import Connection

        with Connection(settings.CELERY_BROKER_URL) as connection:
            queue = connection.SimpleQueue("hol-broker-test")
            print("ready", flush=True)
            message = queue.get(block=True, timeout=60)
            message.ack()
            print(json.dumps(message.payload), flush=True)
            queue.close()
        """,
    )
    assert read_line(consumer) == "ready"
    producer = hol_python(
        redis_dir,
        """
        import os
        from kombu import Connection

        with Connection(settings.CELERY_BROKER_URL) as connection:
            queue = connection.SimpleQueue("hol-broker-test")
            queue.put({"task": "tasks.tasks.requeue_lapsed_work", "from_pid": os.getpid()})
            queue.close()
        print(os.getpid())
        """,
    )
    producer_pid = int(finish(producer))
    assert json.loads(finish(consumer)) == {"task": "tasks.tasks.requeue_lapsed_work", "from_pid": producer_pid}


def test_ensure_running_twice_keeps_one_server(redis_dir):
    pid = server_pid(redis_dir)
    assert embedded_redis.ensure_running(redis_dir / "redis.sock") == redis_dir / "redis.sock"
    assert server_pid(redis_dir) == pid


def test_stop_shuts_the_embedded_server_down():
    data_dir = Path(tempfile.mkdtemp(prefix="hol-redis-")).resolve()
    try:
        socket_path = embedded_redis.ensure_running(data_dir / "redis.sock")
        assert embedded_redis.answers_ping(socket_path)
        embedded_redis.stop(socket_path)
        deadline = time.monotonic() + 10
        while embedded_redis.answers_ping(socket_path):
            assert time.monotonic() < deadline, "the embedded redis still answers after stop()"
            time.sleep(0.05)
    finally:
        stop_and_remove(data_dir)


# --- who starts the server ------------------------------------------------------------------------


@pytest.fixture
def prepared_dir():
    """A data dir with its keys (as manage.py leaves it) and no Redis server running."""
    data_dir = datadir.prepare(Path(tempfile.mkdtemp(prefix="hol-redis-")).resolve())
    yield data_dir
    stop_and_remove(data_dir)


def test_django_setup_starts_no_redis_server(prepared_dir):
    source = "from django.conf import settings\nprint(settings.REDIS_URL)"
    assert finish(hol_python(prepared_dir, source, prelude="import django\ndjango.setup()\n")).startswith("unix://")
    assert not (prepared_dir / "redis.pid").exists()
    assert not embedded_redis.answers_ping(prepared_dir / "redis.sock")


def test_django_setup_makes_no_data_dir(tmp_path):
    missing = tmp_path / "never-made"
    hol_python(missing, "", prelude="import django\ndjango.setup()\n").communicate(timeout=WAIT_SECONDS)
    assert not missing.exists()


def test_the_asgi_application_starts_the_embedded_server(prepared_dir):
    finish(hol_python(prepared_dir, "", prelude="import hol.asgi\n"))
    assert embedded_redis.answers_ping(prepared_dir / "redis.sock")


def test_celery_beat_start_starts_the_embedded_server(prepared_dir):
    # What `celery -A hol beat` does on start: import the app, then send beat_init.
    prelude = "import hol\nfrom celery import signals\nsignals.beat_init.send(sender=None)\n"
    finish(hol_python(prepared_dir, "", prelude=prelude))
    assert embedded_redis.answers_ping(prepared_dir / "redis.sock")
