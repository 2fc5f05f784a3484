"""The intake gate: error codes, aliases, normalisation, idempotency, filters, PATCH.

API tests get the database through the persona fixtures; the check_intake tests at the end ask
for none, so pytest-django fails them if the pure gate ever touches the database.
"""

from __future__ import annotations

import pytest

from audit.models import AuditEntry
from hol.errors import ValidationFailed
from tasks.intake import (
    INVALID_OPERATION,
    NETWORK_ACCESS_DENIED,
    REPO_NOT_ALLOWED,
    SECRETS_ACCESS_DENIED,
    TIME_BUDGET_TOO_HIGH,
    TIME_BUDGET_TOO_LOW,
    apply_aliases,
    check_intake,
)
from tasks.models import Task, WorkOrder
from tests.factories import client_for

GITHUB = ["https://github.com/"]


def post_task(client, payload):
    return client.post("/api/v1/tasks", payload, format="json")


def bare_task(**fields):
    """A minimal payload without the canonical names, so aliases can stand in for them."""
    return {"objective": "Tidy the README", **fields}


# --- the six error codes, through the API --------------------------------------------------------


def test_unknown_operation_is_refused_with_invalid_operation(as_agent_007, new_task):
    response = post_task(as_agent_007, new_task(operation="delete_everything"))
    assert response.status_code == 422
    assert response.json()["code"] == "INVALID_OPERATION"
    assert "delete_everything" in response.json()["message"]
    assert not Task.objects.exists()


def test_repo_outside_allowed_prefixes_is_refused_with_repo_not_allowed(as_agent_007, new_task):
    response = post_task(as_agent_007, new_task(target={"repo": "https://evil.example.com/acme/shop"}))
    assert response.status_code == 422
    assert response.json()["code"] == "REPO_NOT_ALLOWED"
    assert response.json()["message"]
    assert not Task.objects.exists()


def test_empty_allowed_prefixes_deny_every_repo(as_agent_007, new_task, settings):
    settings.HOL_ALLOWED_REPO_PREFIXES = []
    response = post_task(as_agent_007, new_task())
    assert response.status_code == 422
    assert response.json()["code"] == "REPO_NOT_ALLOWED"


def test_time_budget_below_30_seconds_is_refused_with_too_low(as_agent_007, new_task):
    response = post_task(as_agent_007, new_task(constraints={"time_budget_seconds": 29}))
    assert response.status_code == 422
    assert response.json()["code"] == "TIME_BUDGET_TOO_LOW"
    assert response.json()["message"]


def test_time_budget_above_a_day_is_refused_with_too_high(as_agent_007, new_task):
    response = post_task(as_agent_007, new_task(constraints={"time_budget_seconds": 86401}))
    assert response.status_code == 422
    assert response.json()["code"] == "TIME_BUDGET_TOO_HIGH"
    assert response.json()["message"]


def test_network_access_is_refused_with_network_access_denied(as_agent_007, new_task):
    response = post_task(as_agent_007, new_task(constraints={"allow_network": True}))
    assert response.status_code == 422
    assert response.json()["code"] == "NETWORK_ACCESS_DENIED"
    assert response.json()["message"]


def test_secrets_access_is_refused_with_secrets_access_denied(as_agent_007, new_task):
    response = post_task(as_agent_007, new_task(constraints={"allow_secrets": True}))
    assert response.status_code == 422
    assert response.json()["code"] == "SECRETS_ACCESS_DENIED"
    assert response.json()["message"]


def test_refused_task_body_is_exactly_code_and_message(as_agent_007, new_task):
    response = post_task(as_agent_007, new_task(operation="nope"))
    assert set(response.json()) == {"code", "message"}


def test_task_without_objective_is_a_400_not_a_500(as_agent_007):
    response = post_task(as_agent_007, {"target": {"repo": "https://github.com/acme/shop"}})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_task_with_a_json_array_body_is_a_400(as_agent_007):
    response = post_task(as_agent_007, [1, 2, 3])
    assert response.status_code == 400


def test_task_with_a_non_object_target_is_a_400(as_agent_007):
    response = post_task(as_agent_007, {"objective": "x", "target": ["https://github.com/acme/shop"]})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_task_with_a_non_string_ref_is_a_400(as_agent_007, new_task):
    response = post_task(as_agent_007, new_task(target={"repo": "https://github.com/acme/shop", "ref": 5}))
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert not Task.objects.exists()


# --- aliases --------------------------------------------------------------------------------------


def test_type_alias_sets_the_operation(as_agent_007):
    response = post_task(as_agent_007, bare_task(type="docs", target={"repo": "https://github.com/acme/shop"}))
    assert response.status_code == 201, response.content
    assert response.json()["operation"] == "docs"


def test_invalid_type_alias_is_refused_with_invalid_operation(as_agent_007):
    response = post_task(as_agent_007, bare_task(type="rm -rf", target={"repo": "https://github.com/acme/shop"}))
    assert response.status_code == 422
    assert response.json()["code"] == "INVALID_OPERATION"


def test_payload_alias_sets_the_inputs(as_agent_007):
    response = post_task(
        as_agent_007, bare_task(payload={"file": "README.md"}, target={"repo": "https://github.com/acme/shop"})
    )
    assert response.status_code == 201, response.content
    assert response.json()["inputs"] == {"file": "README.md"}


def test_target_repository_alias_sets_the_repo(as_agent_007):
    response = post_task(as_agent_007, bare_task(target={"repository": "https://github.com/acme/shop"}))
    assert response.status_code == 201, response.content
    assert response.json()["target"]["repo"] == "https://github.com/acme/shop"


def test_repository_url_and_branch_name_aliases_set_repo_and_ref(as_agent_007):
    response = post_task(
        as_agent_007, bare_task(repository_url="https://github.com/acme/shop", branch_name="release/2.0")
    )
    assert response.status_code == 201, response.content
    assert response.json()["target"] == {"repo": "https://github.com/acme/shop", "ref": "release/2.0", "path": ""}


def test_repository_url_alias_goes_through_the_repo_gate(as_agent_007):
    response = post_task(as_agent_007, bare_task(repository_url="https://gitlab.example.com/acme/shop"))
    assert response.status_code == 422
    assert response.json()["code"] == "REPO_NOT_ALLOWED"


# --- normalisation and defaults -------------------------------------------------------------------


def test_repo_is_lower_cased_and_git_suffix_stripped(as_agent_007, new_task):
    response = post_task(as_agent_007, new_task(target={"repo": "https://GitHub.com/Acme/Shop.git"}))
    assert response.status_code == 201, response.content
    assert response.json()["target"]["repo"] == "https://github.com/acme/shop"
    assert Task.objects.get().target_repo == "https://github.com/acme/shop"


def test_a_local_repository_path_keeps_its_case_and_git_suffix(as_agent_007, new_task, settings):
    settings.HOL_ALLOWED_REPO_PREFIXES = ["/srv/Repos/"]
    response = post_task(as_agent_007, new_task(target={"repo": "/srv/Repos/App.git/"}))
    assert response.status_code == 201, response.content
    assert Task.objects.get().target_repo == "/srv/Repos/App.git"
    refused = post_task(as_agent_007, new_task(target={"repo": "/srv/repos/App.git"}))
    assert refused.status_code == 422 and refused.json()["code"] == "REPO_NOT_ALLOWED"


def test_objective_is_trimmed(as_agent_007, new_task):
    response = post_task(as_agent_007, new_task(objective="   Make the build green \n"))
    assert response.status_code == 201, response.content
    assert response.json()["objective"] == "Make the build green"


def test_defaults_fill_ref_path_and_constraints(as_agent_007, new_task):
    body = post_task(as_agent_007, new_task()).json()
    assert body["target"] == {"repo": "https://github.com/acme/shop", "ref": "main", "path": ""}
    assert body["constraints"] == {"time_budget_seconds": 900, "allow_network": False, "allow_secrets": False}
    assert body["status"] == "queued"
    assert body["requested_by"]["kind"] == "agent"
    assert body["requested_by"]["label"] == "agent_007"


def test_title_defaults_to_the_first_line_of_the_objective(as_agent_007, new_task):
    payload = new_task(objective="Upgrade Django\nand fix deprecations")
    del payload["title"]
    assert post_task(as_agent_007, payload).json()["title"] == "Upgrade Django"


def test_creating_a_task_records_task_created_in_the_audit_log(as_agent_007, new_task):
    task_id = post_task(as_agent_007, new_task()).json()["id"]
    assert AuditEntry.objects.filter(action="task.created", target_id=task_id, actor="agent_007").count() == 1


def test_create_with_enqueue_puts_the_task_on_the_queue(as_agent_007, new_task):
    task_id = post_task(as_agent_007, new_task(enqueue=True)).json()["id"]
    work_order = WorkOrder.objects.get(task_id=task_id)
    assert work_order.status == WorkOrder.Status.QUEUED
    assert AuditEntry.objects.filter(
        action="work_order.enqueued", target_id=str(work_order.pk), actor="agent_007"
    ).exists()


# --- idempotency ----------------------------------------------------------------------------------


def test_same_idempotency_key_returns_the_same_task_with_200(as_agent_007, new_task):
    first = post_task(as_agent_007, new_task(idempotency_key="build-42"))
    second = post_task(as_agent_007, new_task(idempotency_key="build-42", title="a different title"))
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["title"] == "Fix the flaky login test"
    assert Task.objects.count() == 1


def test_different_idempotency_keys_create_two_tasks(as_agent_007, new_task):
    post_task(as_agent_007, new_task(idempotency_key="build-42"))
    response = post_task(as_agent_007, new_task(idempotency_key="build-43"))
    assert response.status_code == 201
    assert Task.objects.count() == 2


def test_idempotency_key_is_per_submitter(as_agent_007, as_agent_008, new_task):
    mine = post_task(as_agent_007, new_task(idempotency_key="build-42")).json()["id"]
    response = post_task(as_agent_008, new_task(idempotency_key="build-42"))
    assert response.status_code == 201
    assert response.json()["id"] != mine


def test_tasks_without_idempotency_key_are_never_merged(as_agent_007, new_task):
    post_task(as_agent_007, new_task())
    assert post_task(as_agent_007, new_task()).status_code == 201
    assert Task.objects.count() == 2


# --- list filters ---------------------------------------------------------------------------------


@pytest.fixture
def three_tasks(as_agent_007, new_task):
    """A bugfix on shop (high), a docs task on docs (low), a feature on shop (normal) that is cancelled."""
    ids = {
        "shop_bugfix": post_task(as_agent_007, new_task(priority="high")).json()["id"],
        "docs": post_task(
            as_agent_007,
            new_task(
                task_type="docs",
                operation="docs",
                priority="low",
                target={"repo": "https://github.com/acme/handbook"},
            ),
        ).json()["id"],
        "shop_feature": post_task(as_agent_007, new_task(task_type="feature", operation="analysis")).json()["id"],
    }
    as_agent_007.patch(f"/api/v1/tasks/{ids['shop_feature']}", {"status": "cancelled"}, format="json")
    return ids


def listed_ids(client, query: str) -> set[str]:
    response = client.get(f"/api/v1/tasks?{query}")
    assert response.status_code == 200, response.content
    return {task["id"] for task in response.json()["results"]}


def test_task_list_filters_by_status(as_agent_007, three_tasks):
    assert listed_ids(as_agent_007, "status=cancelled") == {three_tasks["shop_feature"]}


def test_task_list_filters_by_task_type(as_agent_007, three_tasks):
    assert listed_ids(as_agent_007, "task_type=docs") == {three_tasks["docs"]}


def test_task_list_filters_by_operation(as_agent_007, three_tasks):
    assert listed_ids(as_agent_007, "operation=analysis") == {three_tasks["shop_feature"]}


def test_task_list_filters_by_priority(as_agent_007, three_tasks):
    assert listed_ids(as_agent_007, "priority=high") == {three_tasks["shop_bugfix"]}


def test_task_list_filters_by_repo_case_insensitively(as_agent_007, three_tasks):
    expected = {three_tasks["shop_bugfix"], three_tasks["shop_feature"]}
    assert listed_ids(as_agent_007, "repo=https://github.com/Acme/Shop") == expected


def test_task_list_without_filters_lists_everything(as_agent_007, three_tasks):
    assert listed_ids(as_agent_007, "") == set(three_tasks.values())


def test_task_list_refuses_an_unknown_status_value(as_agent_007, three_tasks):
    assert as_agent_007.get("/api/v1/tasks?status=exploded").status_code == 400


# --- PATCH ----------------------------------------------------------------------------------------


@pytest.fixture
def task_id(as_agent_007, new_task) -> str:
    return post_task(as_agent_007, new_task()).json()["id"]


def test_patch_changes_title_description_and_priority(as_agent_007, task_id):
    response = as_agent_007.patch(
        f"/api/v1/tasks/{task_id}",
        {"title": "Fix it properly", "description": "see #12", "priority": "high"},
        format="json",
    )
    assert response.status_code == 200, response.content
    task = Task.objects.get(pk=task_id)
    assert (task.title, task.description, task.priority) == ("Fix it properly", "see #12", "high")


def test_patch_records_task_updated_in_the_audit_log(as_agent_007, task_id):
    as_agent_007.patch(f"/api/v1/tasks/{task_id}", {"priority": "low"}, format="json")
    assert AuditEntry.objects.filter(action="task.updated", target_id=task_id, actor="agent_007").count() == 1


def test_patch_cancel_cancels_the_task_and_its_work_order(as_agent_007, task_id):
    work_order_id = as_agent_007.post("/api/v1/queue/enqueue", {"task_id": task_id}, format="json").json()["id"]
    response = as_agent_007.patch(f"/api/v1/tasks/{task_id}", {"status": "cancelled"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    assert WorkOrder.objects.get(pk=work_order_id).status == WorkOrder.Status.CANCELLED
    assert AuditEntry.objects.filter(action="task.cancelled", target_id=task_id, actor="agent_007").exists()
    assert AuditEntry.objects.filter(action="work_order.cancelled", target_id=work_order_id, actor="agent_007").exists()


def test_cancelled_task_is_no_longer_claimable(as_agent_007, task_id):
    worker_id = as_agent_007.post("/api/v1/workers", {"name": "w"}, format="json").json()["id"]
    as_agent_007.post("/api/v1/queue/enqueue", {"task_id": task_id}, format="json")
    as_agent_007.patch(f"/api/v1/tasks/{task_id}", {"status": "cancelled"}, format="json")
    assert as_agent_007.post("/api/v1/queue/claim", {"worker_id": worker_id}, format="json").status_code == 204


@pytest.mark.parametrize("status", ["completed", "failed", "in_progress", "queued"])
def test_patch_refuses_any_status_but_cancelled(as_agent_007, task_id, status):
    response = as_agent_007.patch(f"/api/v1/tasks/{task_id}", {"status": status}, format="json")
    assert response.status_code == 400
    assert Task.objects.get(pk=task_id).status == Task.Status.QUEUED


def test_cancelling_a_cancelled_task_again_changes_nothing(as_agent_007, task_id):
    as_agent_007.patch(f"/api/v1/tasks/{task_id}", {"status": "cancelled"}, format="json")
    response = as_agent_007.patch(f"/api/v1/tasks/{task_id}", {"status": "cancelled"}, format="json")
    assert response.status_code == 200
    assert AuditEntry.objects.filter(action="task.cancelled", target_id=task_id).count() == 1


def test_completed_task_cannot_be_cancelled(as_agent_007, task_id):
    worker_id = as_agent_007.post("/api/v1/workers", {"name": "w"}, format="json").json()["id"]
    as_agent_007.post("/api/v1/queue/enqueue", {"task_id": task_id}, format="json")
    work_order_id = as_agent_007.post("/api/v1/queue/claim", {"worker_id": worker_id}, format="json").json()["id"]
    as_agent_007.post("/api/v1/queue/complete", {"work_order_id": work_order_id}, format="json")
    response = as_agent_007.patch(f"/api/v1/tasks/{task_id}", {"status": "cancelled"}, format="json")
    assert response.status_code == 409
    assert Task.objects.get(pk=task_id).status == Task.Status.COMPLETED


def test_agent_cannot_patch_another_agents_task(as_agent_008, task_id):
    response = as_agent_008.patch(f"/api/v1/tasks/{task_id}", {"title": "mine now"}, format="json")
    assert response.status_code == 403
    assert Task.objects.get(pk=task_id).title == "Fix the flaky login test"


def test_tech_lead_may_patch_an_agents_task(bob_tech_lead, task_id):
    response = client_for(bob_tech_lead).patch(f"/api/v1/tasks/{task_id}", {"priority": "high"}, format="json")
    assert response.status_code == 200
    assert AuditEntry.objects.filter(action="task.updated", target_id=task_id, actor="bob_tech_lead").exists()


def test_developer_may_not_patch_an_agents_task(as_alice, task_id):
    response = as_alice.patch(f"/api/v1/tasks/{task_id}", {"priority": "high"}, format="json")
    assert response.status_code == 403
    assert Task.objects.get(pk=task_id).priority == "normal"


def test_patch_of_a_malformed_task_id_is_404(as_agent_007):
    assert as_agent_007.patch("/api/v1/tasks/not-a-uuid", {"title": "x"}, format="json").status_code == 404


def test_patch_of_an_unknown_task_is_404(as_agent_007):
    response = as_agent_007.patch("/api/v1/tasks/00000000-0000-0000-0000-000000000000", {"title": "x"}, format="json")
    assert response.status_code == 404


# --- check_intake: the pure function (these tests have no database access: it must not need any) --


def gate(data, **options):
    options.setdefault("allowed_repo_prefixes", GITHUB)
    return check_intake(apply_aliases(data), **options)


def gate_code(data, **options) -> str:
    with pytest.raises(ValidationFailed) as raised:
        gate(data, **options)
    assert raised.value.message
    return raised.value.code


REPO = {"repo": "https://github.com/a/b"}


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({"operation": "launch_missiles", "target": REPO}, INVALID_OPERATION),
        ({"target": {"repo": "https://bitbucket.org/a/b"}}, REPO_NOT_ALLOWED),
        ({"target": {}}, REPO_NOT_ALLOWED),
        ({"target": {"repo": "   "}}, REPO_NOT_ALLOWED),
        ({"target": REPO, "constraints": {"time_budget_seconds": 29}}, TIME_BUDGET_TOO_LOW),
        ({"target": REPO, "constraints": {"time_budget_seconds": "900"}}, TIME_BUDGET_TOO_LOW),
        ({"target": REPO, "constraints": {"time_budget_seconds": True}}, TIME_BUDGET_TOO_LOW),
        ({"target": REPO, "constraints": {"time_budget_seconds": 86401}}, TIME_BUDGET_TOO_HIGH),
        ({"target": REPO, "constraints": {"allow_network": True}}, NETWORK_ACCESS_DENIED),
        ({"target": REPO, "constraints": {"allow_secrets": True}}, SECRETS_ACCESS_DENIED),
    ],
)
def test_check_intake_raises_the_stable_code(data, code):
    assert gate_code(data) == code


def test_check_intake_accepts_the_budget_bounds_inclusive():
    for budget in (30, 86400):
        gated = gate({"target": {"repo": "https://github.com/a/b"}, "constraints": {"time_budget_seconds": budget}})
        assert gated["time_budget_seconds"] == budget


def test_check_intake_with_no_prefixes_denies_every_repo():
    assert gate_code({"target": {"repo": "https://github.com/a/b"}}, allowed_repo_prefixes=[]) == REPO_NOT_ALLOWED


def test_check_intake_matches_prefixes_case_insensitively():
    gated = gate({"target": {"repo": "https://github.com/a/b"}}, allowed_repo_prefixes=["HTTPS://GitHub.com/"])
    assert gated["target_repo"] == "https://github.com/a/b"


def test_check_intake_lets_network_and_secrets_through_when_allowed():
    gated = gate(
        {"target": {"repo": "https://github.com/a/b"}, "constraints": {"allow_network": True, "allow_secrets": True}},
        allow_network=True,
        allow_secrets=True,
    )
    assert gated["allow_network"] is True
    assert gated["allow_secrets"] is True


def test_check_intake_normalises_repo_and_fills_defaults():
    gated = gate({"target": {"repo": "  HTTPS://GITHUB.COM/Acme/Shop.git "}})
    assert gated == {
        "operation": "code_change",
        "target_repo": "https://github.com/acme/shop",
        "target_ref": "main",
        "target_path": "",
        "time_budget_seconds": 900,
        "allow_network": False,
        "allow_secrets": False,
    }


def test_check_intake_reads_every_alias():
    gated = gate({"type": "ops", "repository_url": "https://github.com/a/b", "branch_name": "dev"})
    assert (gated["operation"], gated["target_repo"], gated["target_ref"]) == ("ops", "https://github.com/a/b", "dev")
    assert gate({"target": {"repository": "https://github.com/a/c"}})["target_repo"] == "https://github.com/a/c"


def test_apply_aliases_moves_payload_to_inputs_without_changing_the_original():
    original = {"payload": {"k": 1}, "target": {"repository": "r"}}
    aliased = apply_aliases(original)
    assert aliased["inputs"] == {"k": 1}
    assert aliased["target"] == {"repo": "r"}
    assert original == {"payload": {"k": 1}, "target": {"repository": "r"}}


def test_canonical_names_win_over_aliases():
    aliased = apply_aliases({"operation": "docs", "type": "ops", "target": {"repo": "a", "repository": "b"}})
    assert aliased["operation"] == "docs"
    assert aliased["target"]["repo"] == "a"
