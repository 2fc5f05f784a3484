"""The Django admin: every HOL model is there, its pages load with filters and search, and its
actions change state only through the services (so they are audited like every other path)."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from audit.models import AuditEntry
from chat.models import ChatMessage
from notifications.models import Notification
from tasks import services as task_services
from tasks.models import AgentSession, Task, Worker, WorkOrder

HOL_APPS = ("tasks", "audit", "chat", "notifications", "approvals")
REGISTERED = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)
SEARCHABLE = [(model, model_admin) for model, model_admin in REGISTERED if model_admin.search_fields]


def changelist_url(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


@pytest.fixture
def operator(admin_user):
    """pytest-django's superuser, `admin`."""
    return admin_user


@pytest.fixture
def busy_hol(agent_007, alice_developer):
    """A little of everything: a claimed work order with its execution, a session, a queued task,
    a notification, a chat line and their audit entries."""
    payload = {
        "title": "Fix the flaky login test",
        "objective": "Make tests/test_login.py pass reliably",
        "target": {"repo": "https://github.com/acme/shop"},
        "assigned_to": "alice_developer",
    }
    task, _ = task_services.task_create(actor=agent_007, payload=payload)
    queued, _ = task_services.task_create(actor=agent_007, payload={**payload, "title": "Write the changelog"})
    worker = task_services.worker_register(actor=agent_007, name="007-laptop")
    task_services.work_order_enqueue(actor=agent_007, task_id=task.pk)
    work_order = task_services.work_order_claim(actor=agent_007, worker_id=worker.pk)
    session = task_services.session_create(actor=agent_007, session_id="claude-abc123", worker_id=worker.pk)
    from notifications.services import notification_create

    notification_create(user=alice_developer, kind="work_order.failed", message="it broke", related=task)
    ChatMessage.objects.create(task=task, sender=agent_007, sender_type="worker", content="running the tests")
    return {"task": task, "queued": queued, "worker": worker, "work_order": work_order, "session": session}


def run_action(client, model, action: str, *objects):
    return client.post(
        changelist_url(model), {"action": action, "_selected_action": [str(obj.pk) for obj in objects]}, follow=True
    )


# --- every model is there -------------------------------------------------------------------------


def shown_in_admin(model) -> bool:
    """Registered, or edited inline on a registered model's page."""
    if admin.site.is_registered(model):
        return True
    return any(inline.model is model for model_admin in admin.site._registry.values() for inline in model_admin.inlines)


@pytest.mark.parametrize("app_label", HOL_APPS)
def test_every_hol_model_is_in_the_admin(app_label):
    missing = [m._meta.label for m in apps.get_app_config(app_label).get_models() if not shown_in_admin(m)]
    assert not missing


@pytest.mark.parametrize(("model", "model_admin"), REGISTERED, ids=[model._meta.label for model, _ in REGISTERED])
def test_changelist_loads_for_a_superuser(admin_client, busy_hol, model, model_admin):
    response = admin_client.get(changelist_url(model))
    assert response.status_code == 200


@pytest.mark.parametrize(("model", "model_admin"), SEARCHABLE, ids=[model._meta.label for model, _ in SEARCHABLE])
def test_changelist_search_loads_for_a_superuser(admin_client, busy_hol, model, model_admin):
    response = admin_client.get(changelist_url(model), {"q": "flaky"})
    assert response.status_code == 200


def test_queue_changelists_offer_list_filters_and_search():
    for model in apps.get_app_config("tasks").get_models():
        model_admin = admin.site._registry[model]
        assert model_admin.list_filter, f"{model._meta.label} has no list filters"
        assert model_admin.search_fields, f"{model._meta.label} has no search"


def test_task_search_finds_by_title_and_repo(admin_client, busy_hol):
    by_title = admin_client.get(changelist_url(Task), {"q": "changelog"}).context["cl"]
    by_repo = admin_client.get(changelist_url(Task), {"q": "acme/shop"}).context["cl"]
    nothing = admin_client.get(changelist_url(Task), {"q": "kubernetes"}).context["cl"]
    assert [task.title for task in by_title.result_list] == ["Write the changelog"]
    assert (by_repo.result_count, nothing.result_count) == (2, 0)


def test_task_list_filter_by_status(admin_client, busy_hol):
    cl = admin_client.get(changelist_url(Task), {"status__exact": "in_progress"}).context["cl"]
    assert [task.pk for task in cl.result_list] == [busy_hol["task"].pk]


def test_work_order_list_filter_by_status(admin_client, busy_hol):
    claimed = admin_client.get(changelist_url(WorkOrder), {"status__exact": "claimed"}).context["cl"]
    queued = admin_client.get(changelist_url(WorkOrder), {"status__exact": "queued"}).context["cl"]
    assert (claimed.result_count, queued.result_count) == (1, 0)


def test_worker_search_finds_by_owner(admin_client, busy_hol):
    cl = admin_client.get(changelist_url(Worker), {"q": "agent_007"}).context["cl"]
    assert [worker.pk for worker in cl.result_list] == [busy_hol["worker"].pk]


def test_session_search_finds_by_session_id(admin_client, busy_hol):
    cl = admin_client.get(changelist_url(AgentSession), {"q": "abc123"}).context["cl"]
    assert [session.pk for session in cl.result_list] == [busy_hol["session"].pk]


def test_audit_log_filters_by_action(admin_client, busy_hol):
    cl = admin_client.get(changelist_url(AuditEntry), {"action": "work_order.claimed"}).context["cl"]
    assert cl.result_count == 1


def test_notification_list_filters_by_read_state(admin_client, busy_hol):
    cl = admin_client.get(changelist_url(Notification), {"is_read__exact": "0"}).context["cl"]
    assert cl.result_count == Notification.objects.filter(is_read=False).count() >= 1


def test_task_change_page_shows_its_work_orders(admin_client, busy_hol):
    task = busy_hol["task"]
    response = admin_client.get(reverse("admin:tasks_task_change", args=[task.pk]))
    assert response.status_code == 200
    assert str(busy_hol["worker"]) in response.content.decode()


def test_queue_state_cannot_be_added_or_edited_by_hand(admin_client, busy_hol):
    assert admin_client.get(reverse("admin:tasks_workorder_add")).status_code == 403
    change_url = reverse("admin:tasks_workorder_change", args=[busy_hol["work_order"].pk])
    admin_client.post(change_url, {"status": "completed"})
    assert WorkOrder.objects.get(pk=busy_hol["work_order"].pk).status == WorkOrder.Status.CLAIMED


def test_audit_entries_cannot_be_deleted_from_the_admin(admin_client, busy_hol):
    entry = AuditEntry.objects.filter(action="task.created").first()
    admin_client.post(reverse("admin:audit_auditentry_delete", args=[entry.pk]), {"post": "yes"})
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_agent_account_cannot_open_the_admin(client, agent_007):
    client.force_login(agent_007)
    response = client.get(changelist_url(Task))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


# --- actions go through the services --------------------------------------------------------------


def test_cancel_action_cancels_the_task_and_its_work_through_the_service(admin_client, operator, busy_hol):
    task, work_order = busy_hol["task"], busy_hol["work_order"]
    response = run_action(admin_client, Task, "cancel_tasks", task)
    assert response.status_code == 200
    assert Task.objects.get(pk=task.pk).status == Task.Status.CANCELLED
    assert WorkOrder.objects.get(pk=work_order.pk).status == WorkOrder.Status.CANCELLED
    assert AuditEntry.objects.filter(action="task.cancelled", target_id=str(task.pk), actor="admin").exists()
    assert Worker.objects.get(pk=busy_hol["worker"].pk).status == Worker.Status.IDLE


def test_enqueue_action_puts_the_task_on_the_queue_through_the_service(admin_client, operator, busy_hol):
    queued = busy_hol["queued"]
    run_action(admin_client, Task, "enqueue_tasks", queued)
    work_order = WorkOrder.objects.get(task=queued)
    assert work_order.status == WorkOrder.Status.QUEUED
    assert AuditEntry.objects.filter(action="work_order.enqueued", target_id=str(work_order.pk), actor="admin").exists()


def test_enqueue_action_reports_the_rule_a_task_breaks_and_changes_nothing(admin_client, busy_hol):
    task = busy_hol["task"]  # already holds an active work order
    response = run_action(admin_client, Task, "enqueue_tasks", task)
    messages = [str(message) for message in response.context["messages"]]
    assert any("already has an active work order" in message for message in messages)
    assert WorkOrder.objects.filter(task=task).count() == 1


def test_deregister_action_takes_the_worker_offline_through_the_service(admin_client, busy_hol):
    worker, work_order = busy_hol["worker"], busy_hol["work_order"]
    run_action(admin_client, Worker, "deregister_workers", worker)
    assert Worker.objects.get(pk=worker.pk).status == Worker.Status.OFFLINE
    assert WorkOrder.objects.get(pk=work_order.pk).status == WorkOrder.Status.QUEUED
    assert AuditEntry.objects.filter(action="worker.deregistered", target_id=str(worker.pk), actor="admin").exists()


def test_terminate_action_ends_the_session_through_the_service(admin_client, busy_hol):
    session = busy_hol["session"]
    run_action(admin_client, AgentSession, "terminate_sessions", session)
    session.refresh_from_db()
    assert (session.status, session.termination_reason) == ("terminated", "terminated by admin")
    assert AuditEntry.objects.filter(action="session.terminated", target_id=str(session.pk), actor="admin").exists()
