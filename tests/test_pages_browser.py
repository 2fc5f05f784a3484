"""What a person sees and clicks, in a real browser (Playwright driving Debian's chromium) against
HOL served by a real daphne, while an agent works over the HTTP API. Screenshots of every page go
to docs/screenshots/ for the README when HOL_UPDATE_SCREENSHOTS=1."""

from __future__ import annotations

import os
import re
import shutil
import threading
from contextlib import closing

import httpx
import pytest

playwright_api = pytest.importorskip("playwright.sync_api")

from tests.live import manage  # noqa: E402

CHROMIUM = os.environ.get("HOL_CHROMIUM", "/usr/bin/chromium")
XSS = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>'
DIFF = "@@ -1,3 +1,4 @@\n body {\n-  background: #fff;\n+  background: var(--bg);\n+  color: var(--ink);\n }"
MEDIUM = {"action_type": "file", "operation": "write", "environment": "dev"}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs Debian's chromium"),
]


def sign_in(browser, base: str, password: str, username: str = "demo_tech_lead", **context_options):
    context = browser.new_context(base_url=base, **context_options)
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto("/")
    assert "/login/" in page.url
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/$"))
    return context, page


@pytest.fixture
def person(browser, daphne_url, demo_passwords):
    context, page = sign_in(browser, daphne_url, demo_passwords["demo_tech_lead"])
    yield page
    context.close()


@pytest.fixture
def agent(daphne_url, demo_passwords):
    http = httpx.Client(base_url=daphne_url, timeout=30)
    token = http.post("/api/v1/auth/token", json={"username": "demo_agent", "password": demo_passwords["demo_agent"]})
    http.headers["Authorization"] = f"Bearer {token.json()['access']}"
    worker = http.post("/api/v1/workers", json={"name": "laptop"}).json()
    http.worker_id = worker["id"]
    with closing(http):
        yield http


def create_task_in_the_browser(page, title: str) -> str:
    page.goto("/tasks/")
    page.click("#new-task summary")
    page.fill("#id_title", title)
    page.fill("#id_objective", "Make the login test pass reliably")
    page.fill("#id_repo", "https://github.com/acme/shop")
    page.select_option("#id_assigned_to", "demo_tech_lead")
    page.click("#new-task button[type=submit]")
    page.wait_for_url(re.compile(r"/tasks/[0-9a-f-]{36}/$"))
    return page.url.rstrip("/").rsplit("/", 1)[-1]


def claim(agent, task_id: str) -> None:
    """Claim the task's work order. The server's database outlives single tests (on SQLite it is
    a file of its own), so work left queued by earlier tests is claimed and finished first."""
    for _ in range(20):
        claimed = agent.post("/api/v1/queue/claim", json={"worker_id": agent.worker_id})
        assert claimed.status_code == 200, claimed.text
        if claimed.json()["task"]["id"] == task_id:
            return
        agent.post("/api/v1/queue/complete", json={"work_order_id": claimed.json()["id"], "output": "done"})
    pytest.fail(f"task {task_id} was never claimed")


def post(agent, task_id: str, **fields) -> dict:
    response = agent.post("/api/v1/chat/messages", json={"task_id": task_id, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def test_a_person_signs_in_and_creates_a_task(person):
    task_id = create_task_in_the_browser(person, "Fix the flaky login test")
    assert person.inner_text("h1") == "Fix the flaky login test"
    assert person.inner_text("#task-status") == "Queued"
    assert task_id


def test_the_intake_error_shows_next_to_the_repository(person, shots):
    person.goto("/tasks/")
    person.click("#new-task summary")
    person.fill("#id_objective", "Anything")
    person.fill("#id_repo", "https://evil.example/repo")
    person.click("#new-task button[type=submit]")
    assert "REPO_NOT_ALLOWED" in person.inner_text("#error-repo")
    person.screenshot(path=str(shots / "task-form-error.png"), full_page=True)


def test_an_agents_log_line_appears_live(person, agent):
    task_id = create_task_in_the_browser(person, "Stream some logs")
    claim(agent, task_id)
    post(agent, task_id, content="collecting 42 tests", event_type="log", stage="testing")
    person.wait_for_selector("#stream .msg.log >> text=collecting 42 tests")


def test_a_busy_stream_pages_back_and_the_older_window_stays_still(person, agent, shots):
    from tasks.pages import STREAM_SHOWN

    task_id = create_task_in_the_browser(person, "A long run")
    claim(agent, task_id)
    for n in range(STREAM_SHOWN + 5):
        post(agent, task_id, content=f"step {n}", event_type="log", stage="testing")
    person.reload()
    assert person.locator("#stream .msg").count() == STREAM_SHOWN
    person.click("#stream-earlier")
    person.wait_for_selector("#stream-latest")
    assert person.locator("#stream .msg").count() == 5
    assert person.inner_text("#stream .msg:last-child .body") == "step 4"
    person.screenshot(path=str(shots / "task-earlier.png"), full_page=True)
    post(agent, task_id, content="after paging back", event_type="log")
    person.wait_for_timeout(1500)  # a live page shows a line within a second; this one must not
    assert person.locator("#stream >> text=after paging back").count() == 0
    person.click("#stream-latest")
    person.wait_for_selector("#stream .msg.log >> text=after paging back")
    post(agent, task_id, content="live again", event_type="log")
    person.wait_for_selector("#stream .msg.log >> text=live again")


def test_answering_a_question_reaches_the_waiting_agent_and_the_badge_counts_it(person, agent):
    task_id = create_task_in_the_browser(person, "Ask me something")
    claim(agent, task_id)
    badge_before = int(person.inner_text("#unread-badge"))
    question = post(agent, task_id, content="Which database should I use?", message_type="request")
    results: dict = {}
    waiter = threading.Thread(
        target=lambda: results.update(
            agent.get(f"/api/v1/chat/messages/{question['id']}/reply", params={"wait": 30}, timeout=60).json()
        )
    )
    waiter.start()
    question_box = person.locator(f"#message-{question['id']}")
    question_box.wait_for()
    person.wait_for_function("n => Number(document.getElementById('unread-badge').textContent) > n", arg=badge_before)
    question_box.locator("input[name=message]").fill("PostgreSQL, please")
    question_box.locator("button").click()
    waiter.join(30)
    assert results["answered"] is True
    assert results["reply"]["content"] == "PostgreSQL, please"
    assert results["reply"]["sender"] == "demo_tech_lead"


def test_a_plan_arriving_live_is_approved_with_its_button(person, agent):
    task_id = create_task_in_the_browser(person, "Fix add()")
    claim(agent, task_id)
    plan = post(agent, task_id, content="1. in calc.py, replace '-' with '+'", message_type="request",
                stage="planning", data={"kind": "plan"})  # fmt: skip
    plan_box = person.locator(f"#message-{plan['id']}")
    plan_box.wait_for()  # arrived over the WebSocket: the page was loaded before the plan existed
    plan_box.locator("button", has_text="Approve plan").click()
    person.wait_for_selector(f"#message-{plan['id']}.answered")
    reply = agent.get(f"/api/v1/chat/messages/{plan['id']}/reply").json()["reply"]
    assert (reply["data"], reply["content"], reply["sender"]) == (
        {"decision": "approve"},
        "Plan approved",
        "demo_tech_lead",
    )


def test_approving_from_the_inbox_answers_the_agent(person, agent):
    request = agent.post("/api/v1/approvals", json=MEDIUM)
    assert request.status_code == 201, request.text
    request_id = request.json()["id"]
    person.goto("/approvals/")
    card = person.locator(f"#approval-{request_id}")
    assert "medium risk" in card.inner_text()
    card.locator("textarea").fill("Dev environment, fine")
    card.locator("button.approve").click()
    person.wait_for_url(re.compile(r"/approvals/$"))
    assert agent.get(f"/api/v1/approvals/{request_id}").json()["status"] == "approved"


def test_a_high_risk_task_waits_on_its_page_until_approved_in_the_inbox(person, agent, shots):
    task = agent.post(
        "/api/v1/tasks",
        json={
            "title": "Deploy the shop to production",
            "objective": "Roll out 1.4",
            "target": {"repo": "https://github.com/acme/shop"},
            "action": {"action_type": "deployment", "operation": "deploy", "environment": "production"},
        },
    )
    assert task.status_code == 201, task.text
    task_id, request_id = task.json()["id"], task.json()["approval_request"]
    person.goto(f"/tasks/{task_id}/")
    assert person.locator("#task-status").inner_text() == "Approval Pending"
    person.screenshot(path=str(shots / "task-approval-pending.png"), full_page=True)
    person.goto("/approvals/")
    card = person.locator(f"#approval-{request_id}")
    assert "high risk" in card.inner_text()
    assert "Deploy the shop to production" in card.inner_text()
    card.locator("textarea").fill("Release checklist done")
    card.locator("button.approve").click()
    person.wait_for_url(re.compile(r"/approvals/$"))
    person.goto(f"/tasks/{task_id}/")
    assert person.locator("#task-status").inner_text() == "Queued"
    assert agent.get(f"/api/v1/tasks/{task_id}").json()["status"] == "queued"


def test_agent_html_renders_as_text_and_never_runs(person, agent):
    task = agent.post(
        "/api/v1/tasks",
        json={"title": XSS, "objective": XSS, "operation": "code_change",
              "target": {"repo": "https://github.com/acme/shop"}},
    ).json()  # fmt: skip
    post(agent, task["id"], content=XSS)
    person.goto(f"/tasks/{task['id']}/")
    assert person.inner_text("h1") == XSS
    person.wait_for_selector("#stream .msg")
    post(agent, task["id"], content=XSS + " live")
    person.wait_for_selector("#stream .msg >> text=live")
    assert XSS in person.inner_text("#stream")
    assert person.evaluate("window.__pwned") is None


def test_screenshots_of_every_page(browser, daphne_url, live_env, person, agent, demo_passwords, shots):
    task_id = create_task_in_the_browser(person, "Add a dark theme to the settings page")
    claim(agent, task_id)
    post(agent, task_id, content="Reading the settings templates", event_type="log", stage="planning")
    post(agent, task_id, content="Updated the stylesheet", event_type="code_change", stage="editing",
         data={"diff": DIFF})  # fmt: skip
    post(agent, task_id, content="pytest", event_type="test_result", stage="testing",
         data={"tests": [{"name": "test_settings_page", "status": "passed", "duration": 0.12},
                         {"name": "test_dark_toggle", "status": "failed", "duration": 0.3}],
               "passed": 41, "failed": 1, "skipped": 2})  # fmt: skip
    post(agent, task_id, content="Should the dark theme follow the system setting?", message_type="request")
    agent.post("/api/v1/approvals", json={**MEDIUM, "task_id": task_id})
    person.goto(f"/tasks/{task_id}/")
    person.wait_for_selector("#stream .msg.request")
    pages = {
        "dashboard": "/",
        "tasks": "/tasks/",
        "task": f"/tasks/{task_id}/",
        "approvals": "/approvals/",
        "notifications": "/notifications/",
        "audit": "/audit/",
    }
    # Beat's hourly verification, run now, so the audit page shows a result.
    manage(live_env, "shell", "-c", "from audit.tasks import verify_chain; verify_chain()")
    for name, path in pages.items():
        person.goto(path)
        person.wait_for_load_state("load")
        person.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    phone, phone_page = sign_in(
        browser, daphne_url, demo_passwords["demo_tech_lead"], viewport={"width": 390, "height": 844}, is_mobile=True
    )
    phone_page.goto("/approvals/")
    phone_page.screenshot(path=str(shots / "approvals-phone.png"), full_page=True)
    phone.close()
    login = browser.new_page(base_url=daphne_url)
    login.goto("/login/")
    login.screenshot(path=str(shots / "login.png"))
    login.close()
    assert all((shots / f"{name}.png").stat().st_size > 0 for name in [*pages, "login", "approvals-phone"])
