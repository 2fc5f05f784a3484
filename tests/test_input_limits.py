"""Input the databases cannot store is refused with a 400, never a 500: the NUL character
(PostgreSQL's text and jsonb refuse it) and JSON nested deep enough to exhaust an encoder."""

from __future__ import annotations

import json

import pytest

from chat.models import ChatMessage
from tasks.models import Task


def raw_post(client, path: str, body: str):
    return client.generic("POST", path, body, content_type="application/json")


@pytest.fixture
def task_of_007(as_agent_007, new_task) -> dict:
    response = as_agent_007.post("/api/v1/tasks", new_task(), format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_a_nul_character_in_chat_data_is_a_400(as_agent_007, task_of_007):
    body = json.dumps({"task_id": task_of_007["id"], "content": "log", "data": {"line": "a\u0000b"}})
    response = raw_post(as_agent_007, "/api/v1/chat/messages", body)
    assert (response.status_code, response.json()["code"]) == (400, "parse_error")
    assert not ChatMessage.objects.exists()


def test_a_nul_character_in_task_inputs_is_a_400(as_agent_007, new_task):
    body = json.dumps(new_task(inputs={"file": "x\u0000y"}))
    response = raw_post(as_agent_007, "/api/v1/tasks", body)
    assert response.status_code == 400
    assert not Task.objects.exists()


def test_json_nested_a_thousand_levels_deep_is_a_400(as_agent_007, task_of_007):
    nested = "[" * 1000 + "]" * 1000
    body = f'{{"task_id": "{task_of_007["id"]}", "content": "log", "data": {{"deep": {nested}}}}}'
    response = raw_post(as_agent_007, "/api/v1/chat/messages", body)
    assert response.status_code == 400
    assert "nested" in response.json()["message"]


def test_json_nested_beyond_the_parser_is_a_400(as_agent_007, task_of_007):
    nested = "[" * 200_000 + "]" * 200_000
    response = raw_post(as_agent_007, "/api/v1/chat/messages", nested)
    assert response.status_code == 400


def test_a_nul_character_in_a_form_posted_message_is_a_400(as_agent_007, task_of_007):
    response = as_agent_007.post(
        "/api/v1/chat/messages", {"task_id": task_of_007["id"], "content": "a\x00b"}, format="multipart"
    )
    assert response.status_code == 400
    assert not ChatMessage.objects.exists()
