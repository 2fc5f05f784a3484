"""JWT authentication and the rule that an agent account touches only its own things."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from tasks.models import Worker, WorkOrder
from tests.factories import client_for, make_user


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def obtain(username: str) -> dict:
    response = APIClient().post(
        "/api/v1/auth/token", {"username": username, "password": "pw-" + username}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()


# --- who may call at all --------------------------------------------------------------------------


@pytest.mark.django_db
def test_request_without_token_is_401():
    response = APIClient().get("/api/v1/tasks")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response.json()["message"]


def test_expired_access_token_is_401(agent_007):
    token = AccessToken.for_user(agent_007)
    token.set_exp(lifetime=-timedelta(seconds=1))
    response = bearer(str(token)).get("/api/v1/tasks")
    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


def test_token_signed_with_another_key_is_401(agent_007):
    claims = AccessToken.for_user(agent_007).payload
    forged = jwt.encode(claims, "not-the-" + settings.SECRET_KEY, algorithm="HS256")
    response = bearer(forged).get("/api/v1/tasks")
    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


def test_token_with_tampered_claims_is_401(agent_007, agent_008):
    header, _payload, signature = str(AccessToken.for_user(agent_007)).split(".")
    other_payload = str(AccessToken.for_user(agent_008)).split(".")[1]
    response = bearer(f"{header}.{other_payload}.{signature}").get("/api/v1/tasks")
    assert response.status_code == 401


def test_garbage_bearer_token_is_401(db):
    assert bearer("not-a-jwt").get("/api/v1/tasks").status_code == 401


def test_valid_access_token_is_accepted(as_agent_007):
    assert as_agent_007.get("/api/v1/tasks").status_code == 200


def test_token_endpoint_refuses_a_wrong_password_with_401(agent_007):
    response = APIClient().post("/api/v1/auth/token", {"username": "agent_007", "password": "guess"}, format="json")
    assert response.status_code == 401
    assert "access" not in response.json()


def test_token_endpoint_issues_a_working_access_token(agent_007):
    access = obtain("agent_007")["access"]
    assert bearer(access).get("/api/v1/workers").status_code == 200


def test_access_tokens_are_short_lived(agent_007):
    access = AccessToken(obtain("agent_007")["access"])
    assert access["exp"] - access["iat"] == settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds()
    assert settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"] <= timedelta(minutes=15)


# --- refresh rotation and blacklist ---------------------------------------------------------------


def test_refresh_returns_a_new_access_and_a_new_refresh_token(agent_007):
    pair = obtain("agent_007")
    response = APIClient().post("/api/v1/auth/token/refresh", {"refresh": pair["refresh"]}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["refresh"] != pair["refresh"]
    assert bearer(response.json()["access"]).get("/api/v1/tasks").status_code == 200


def test_refresh_token_cannot_be_reused_after_rotation(agent_007):
    old_refresh = obtain("agent_007")["refresh"]
    assert APIClient().post("/api/v1/auth/token/refresh", {"refresh": old_refresh}, format="json").status_code == 200
    reuse = APIClient().post("/api/v1/auth/token/refresh", {"refresh": old_refresh}, format="json")
    assert reuse.status_code == 401
    assert reuse.json()["code"] == "token_not_valid"


def test_rotated_refresh_token_keeps_working(agent_007):
    first = obtain("agent_007")["refresh"]
    second = APIClient().post("/api/v1/auth/token/refresh", {"refresh": first}, format="json").json()["refresh"]
    assert APIClient().post("/api/v1/auth/token/refresh", {"refresh": second}, format="json").status_code == 200


# --- verify ---------------------------------------------------------------------------------------


def test_verify_accepts_a_valid_token(agent_007):
    access = obtain("agent_007")["access"]
    assert APIClient().post("/api/v1/auth/token/verify", {"token": access}, format="json").status_code == 200


def test_verify_refuses_a_token_with_a_bad_signature(agent_007):
    access = obtain("agent_007")["access"]
    tampered = access[:-4] + ("AAAA" if not access.endswith("AAAA") else "BBBB")
    response = APIClient().post("/api/v1/auth/token/verify", {"token": tampered}, format="json")
    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


def test_verify_refuses_an_expired_token(agent_007):
    token = AccessToken.for_user(agent_007)
    token.set_exp(lifetime=-timedelta(seconds=1))
    response = APIClient().post("/api/v1/auth/token/verify", {"token": str(token)}, format="json")
    assert response.status_code == 401


def test_verify_refuses_a_blacklisted_refresh_token(agent_007):
    old_refresh = obtain("agent_007")["refresh"]
    APIClient().post("/api/v1/auth/token/refresh", {"refresh": old_refresh}, format="json")
    response = APIClient().post("/api/v1/auth/token/verify", {"token": old_refresh}, format="json")
    # simplejwt answers a blacklisted token with a validation error, not an authentication one.
    assert response.status_code == 400
    assert "blacklisted" in response.json()["message"]


# --- an agent touches only its own workers, sessions and work orders -----------------------------


@pytest.fixture
def claimed_by_008(as_agent_008, worker_008, new_task) -> str:
    task_id = as_agent_008.post("/api/v1/tasks", new_task(), format="json").json()["id"]
    as_agent_008.post("/api/v1/queue/enqueue", {"task_id": task_id}, format="json")
    return as_agent_008.post("/api/v1/queue/claim", {"worker_id": worker_008}, format="json").json()["id"]


def test_agent_cannot_heartbeat_another_agents_worker(as_agent_007, worker_008):
    response = as_agent_007.post(f"/api/v1/workers/{worker_008}/heartbeat", {}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


def test_agent_cannot_claim_as_another_agents_worker(as_agent_007, as_agent_008, worker_008, new_task):
    task_id = as_agent_008.post("/api/v1/tasks", new_task(), format="json").json()["id"]
    as_agent_008.post("/api/v1/queue/enqueue", {"task_id": task_id}, format="json")
    response = as_agent_007.post("/api/v1/queue/claim", {"worker_id": worker_008}, format="json")
    assert response.status_code == 403
    assert WorkOrder.objects.get(task_id=task_id).status == WorkOrder.Status.QUEUED


def test_agent_cannot_deregister_another_agents_worker(as_agent_007, worker_008):
    assert as_agent_007.delete(f"/api/v1/workers/{worker_008}").status_code == 403
    assert Worker.objects.get(pk=worker_008).status == Worker.Status.IDLE


def test_agent_cannot_read_another_agents_worker(as_agent_007, worker_008):
    assert as_agent_007.get(f"/api/v1/workers/{worker_008}").status_code == 404


def test_agent_cannot_complete_another_agents_work_order(as_agent_007, claimed_by_008):
    response = as_agent_007.post("/api/v1/queue/complete", {"work_order_id": claimed_by_008}, format="json")
    assert response.status_code == 403
    assert WorkOrder.objects.get(pk=claimed_by_008).status == WorkOrder.Status.CLAIMED


def test_agent_cannot_fail_another_agents_work_order(as_agent_007, claimed_by_008):
    response = as_agent_007.post(
        "/api/v1/queue/fail", {"work_order_id": claimed_by_008, "error": "sabotage"}, format="json"
    )
    assert response.status_code == 403
    assert WorkOrder.objects.get(pk=claimed_by_008).retry_count == 0


def test_agent_lists_only_its_own_workers(as_agent_007, worker_008):
    mine = as_agent_007.post("/api/v1/workers", {"name": "007-laptop"}, format="json").json()["id"]
    listed = [worker["id"] for worker in as_agent_007.get("/api/v1/workers").json()["results"]]
    assert listed == [mine]


def test_human_lists_every_worker(as_alice, as_agent_007, worker_008):
    mine = as_agent_007.post("/api/v1/workers", {"name": "007-laptop"}, format="json").json()["id"]
    listed = {worker["id"] for worker in as_alice.get("/api/v1/workers").json()["results"]}
    assert listed == {mine, worker_008}


def test_agent_lists_only_its_own_sessions(as_agent_007, as_agent_008, worker_008):
    as_agent_008.post("/api/v1/sessions", {"session_id": "claude-008", "worker_id": worker_008}, format="json")
    my_worker = as_agent_007.post("/api/v1/workers", {"name": "007-laptop"}, format="json").json()["id"]
    as_agent_007.post("/api/v1/sessions", {"session_id": "claude-007", "worker_id": my_worker}, format="json")
    listed = [session["session_id"] for session in as_agent_007.get("/api/v1/sessions").json()["results"]]
    assert listed == ["claude-007"]


def test_agent_cannot_map_a_session_to_another_agents_worker(as_agent_007, worker_008):
    response = as_agent_007.post(
        "/api/v1/sessions", {"session_id": "claude-sneaky", "worker_id": worker_008}, format="json"
    )
    assert response.status_code == 403


def test_agent_cannot_see_or_terminate_another_agents_session(as_agent_007, as_agent_008, worker_008):
    as_agent_008.post("/api/v1/sessions", {"session_id": "claude-008", "worker_id": worker_008}, format="json")
    assert as_agent_007.get("/api/v1/sessions/claude-008").status_code == 404
    assert as_agent_007.delete("/api/v1/sessions/claude-008").status_code == 404
    assert as_agent_008.get("/api/v1/sessions/claude-008").json()["status"] == "active"


def test_inactive_account_token_is_refused(db):
    user = make_user("agent_retired", "agent")
    client = client_for(user)
    user.is_active = False
    user.save()
    assert client.get("/api/v1/tasks").status_code == 401
