"""The approvers' admin in a real browser (Debian's chromium through Playwright) against a real
HTTP server on the test database: sign in through the login form, read the list, decide on a
request's page. The screenshots in docs/screenshots/ come from here (HOL_UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.urls import reverse
from playwright.sync_api import Browser, Page, expect, sync_playwright
from pytest_django.live_server_helper import LiveServer

from approvals.models import ApprovalRequest
from approvals.services import approval_request_create
from tasks import services as task_services

CHROMIUM = Path("/usr/bin/chromium")
WIDTH = 1400

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
    pytest.mark.slow,
]


@pytest.fixture
def server(transactional_db, settings) -> Iterator[str]:
    """A real HTTP server in this process, serving the test database over plain http."""
    settings.SECURE_SSL_REDIRECT = False  # read when the server loads its middleware, just below
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    live = LiveServer("localhost")
    yield live.url
    live.stop()


@pytest.fixture
def browser() -> Iterator[Browser]:
    """A chromium per test, started after the test's database fixtures: they send channel-layer
    messages through async_to_sync, which refuses to run while Playwright's event loop is running
    in this thread (so conftest's module-wide browser does not fit here)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


def signed_in_page(browser: Browser, server: str, username: str) -> Page:
    page = browser.new_context(viewport={"width": WIDTH, "height": 900}, base_url=server).new_page()
    page.goto("/admin/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("pw-" + username)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Human Operations Layer")).to_be_visible()
    return page


@pytest.fixture
def waiting_requests(server, agent_007, settings) -> dict[str, ApprovalRequest]:
    """What an approver finds on a Monday morning: a high and a critical request tied to a claimed
    task, and a medium one, all pending."""
    settings.HOL_ALLOWED_REPO_PREFIXES = ["https://github.com/"]
    task, _ = task_services.task_create(
        actor=agent_007,
        payload={
            "title": "Retire the legacy sessions table",
            "objective": "Drop sessions_old from production now that nothing reads it",
            "target": {"repo": "https://github.com/acme/shop"},
        },
    )
    worker = task_services.worker_register(actor=agent_007, name="007-laptop")
    task_services.work_order_enqueue(actor=agent_007, task_id=task.pk)
    work_order = task_services.work_order_claim(actor=agent_007, worker_id=worker.pk)
    link = {"task_id": task.pk, "work_order_id": work_order.pk}
    return {
        "high": approval_request_create(
            actor=agent_007,
            action={
                "action_type": "deployment",
                "operation": "deploy",
                "environment": "production",
                "details": {"service": "shop-web", "version": "2.14.0", "canary": "10%"},
            },
            action_impact="Rolls the web tier to 2.14.0; about 30 s of degraded checkout",
            agent_name="claude-code@007-laptop",
            **link,
        ),
        "critical": approval_request_create(
            actor=agent_007,
            action={
                "action_type": "database",
                "operation": "drop",
                "environment": "production",
                "details": {"database": "shop", "table": "sessions_old", "rows": 1843221},
            },
            action_impact="Removes sessions_old (1.8 M rows); a backup was taken at 06:00",
            agent_name="claude-code@007-laptop",
            **link,
        ),
        "medium": approval_request_create(
            actor=agent_007,
            action={"action_type": "file", "operation": "write", "environment": "staging", "details": {"path": "x"}},
            agent_name="claude-code@007-laptop",
        ),
    }


@pytest.fixture
def approvers(bob_tech_lead, carol_devops, dave_devops):
    """The people who decide the waiting requests; they sign in to the admin by name."""
    return [bob_tech_lead, carol_devops, dave_devops]


def request_page(request: ApprovalRequest) -> str:
    return reverse("admin:approvals_approvalrequest_change", args=[request.pk])


def test_the_approval_list_fits_1400_px_and_shows_progress_and_time_left(
    server, approvers, waiting_requests, shots, browser
):
    page = signed_in_page(browser, server, "carol_devops")
    page.get_by_role("link", name="Approval requests").click()
    expect(page.get_by_role("cell", name="0 of 2 approvals")).to_be_visible()
    expect(page.get_by_role("cell", name="1 h 59 min")).to_be_visible()
    page.screenshot(path=shots / "admin-approval-list.png")
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH
    results = page.locator(".results")  # the admin scrolls a wide table inside this box
    assert results.evaluate("box => box.scrollWidth <= box.clientWidth")


def test_a_tech_lead_approves_a_high_request_on_its_page(server, approvers, waiting_requests, shots, browser):
    request = waiting_requests["high"]
    page = signed_in_page(browser, server, "bob_tech_lead")
    page.goto(request_page(request))
    expect(page.get_by_test_id("progress")).to_have_text("0 of 1 approval")
    page.get_by_label("Justification or reason").fill("Canary plan and rollback checked with the on-call.")
    page.screenshot(path=shots / "admin-approval-request-before.png", full_page=True)

    page.get_by_role("button", name="Approve").click()

    expect(page.get_by_text("The request is approved.")).to_be_visible()
    expect(page.get_by_test_id("why-not")).to_have_text("Approved by bob_tech_lead (tech_lead).")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    page.screenshot(path=shots / "admin-approval-request-after.png", full_page=True)


def test_a_critical_request_shows_1_of_2_after_the_first_devops_engineer(
    server, approvers, waiting_requests, shots, browser
):
    request = waiting_requests["critical"]
    carol = signed_in_page(browser, server, "carol_devops")
    carol.goto(request_page(request))
    carol.get_by_label("Justification or reason").fill("Backup restored in staging this morning.")
    carol.get_by_role("button", name="Approve").click()
    expect(carol.get_by_text("another approver is needed")).to_be_visible()
    carol.screenshot(path=shots / "admin-approval-critical-1-of-2.png", full_page=True)

    dave = signed_in_page(browser, server, "dave_devops")
    dave.goto(request_page(request))
    expect(dave.get_by_test_id("progress")).to_have_text("1 of 2 approvals")
    expect(dave.get_by_text("approved by carol_devops (devops_engineer)")).to_be_visible()
    expect(dave.get_by_role("button", name="Approve")).to_be_visible()


def test_a_tech_lead_is_offered_no_decision_on_a_critical_request(server, approvers, waiting_requests, browser):
    page = signed_in_page(browser, server, "bob_tech_lead")
    page.goto(request_page(waiting_requests["critical"]))
    expect(page.get_by_text("critical requests are decided by a devops_engineer")).to_be_visible()
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
