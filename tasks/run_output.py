"""An agent run's output: each batch of lines goes to the trace folder and, redacted, to the
task's chat as `log` events."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from uuid import UUID

from django.utils import timezone

from chat.models import ChatMessage
from chat.services import chat_message_post
from hol.redact import redact

log = logging.getLogger(__name__)

CHAT_CHUNK_CHARS = 60 * 1024  # under the chat's 64 KiB message limit


class OutputStreamer:
    """Writes each batch of lines to the trace folder and posts it to the task's chat as a `log`
    event, redacted first. A chat failure is logged; it never stops the run."""

    def __init__(self, *, actor: Any, task_id: UUID, session_id: str, trace_dir: Path, secrets: list[str]) -> None:
        self.actor, self.task_id, self.session_id, self.secrets = actor, task_id, session_id, secrets
        self.output = (trace_dir / "output.log").open("a", encoding="utf-8")
        self.events = (trace_dir / "events.jsonl").open("a", encoding="utf-8")

    def __call__(self, batch: list[tuple[str, str]]) -> None:
        clean = [(stream, redact(line, secrets=self.secrets)) for stream, line in batch]
        for stream, line in clean:
            self.output.write(line + "\n" if stream == "stdout" else f"[stderr] {line}\n")
        self.output.flush()
        for stream, text in _chunks(clean):
            event = {"type": "log", "stream": stream, "content": text, "timestamp": timezone.now().isoformat()}
            self.events.write(json.dumps(event) + "\n")
            try:
                chat_message_post(
                    actor=self.actor,
                    task_id=self.task_id,
                    content=text,
                    message_type=ChatMessage.MessageType.STATUS,
                    event_type=ChatMessage.EventType.LOG,
                    data={"stream": stream},
                    session_id=self.session_id,
                )
            except Exception:
                log.exception("could not post agent output to the chat of task %s", self.task_id)
        self.events.flush()

    def close(self) -> None:
        self.output.close()
        self.events.close()


def _chunks(lines: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Consecutive lines of one stream joined into messages under the chat's size limit."""
    chunks: list[tuple[str, str]] = []
    for stream, line in lines:
        if chunks and chunks[-1][0] == stream and len(chunks[-1][1]) + len(line) < CHAT_CHUNK_CHARS:
            chunks[-1] = (stream, chunks[-1][1] + "\n" + line)
        else:
            chunks.append((stream, line))
    return chunks
