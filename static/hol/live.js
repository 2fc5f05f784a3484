/* HOL's live pages: the unread badge, a task's stream, the dashboard. Every socket reconnects by
   itself; the task stream asks for what it missed (?after=<last id>). Agent text is only ever put
   into the page as text (textContent), never as HTML. */
(function () {
  "use strict";

  var banner = document.getElementById("live-banner");
  var broken = {};

  function setPaused(name, paused) {
    if (paused) { broken[name] = true; } else { delete broken[name]; }
    if (banner) { banner.classList.toggle("show", Object.keys(broken).length > 0); }
  }

  function wsUrl(path) {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  }

  /* A socket that comes back: `path()` is asked again on every reconnect. */
  function live(name, path, onEvent) {
    var delay = 500;
    function open() {
      var ws = new WebSocket(wsUrl(path()));
      ws.onopen = function () { delay = 500; setPaused(name, false); };
      ws.onmessage = function (e) {
        try { onEvent(JSON.parse(e.data), ws); } catch (err) { console.error(err); }
      };
      ws.onclose = function (e) {
        if (e.code === 4401 || e.code === 4403 || e.code === 4404) { return; }
        setPaused(name, true);
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 10000);
      };
    }
    open();
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  /* --- the unread badge, on every page --- */
  var badge = document.getElementById("unread-badge");
  if (badge) {
    live("notifications", function () { return "/ws/notifications/"; }, function (event) {
      if (event.type !== "notification") { return; }
      badge.textContent = String(event.unread);
      badge.classList.toggle("zero", event.unread === 0);
      var list = document.getElementById("notification-list");
      if (list && event.notification) {
        var empty = document.getElementById("notification-empty");
        if (empty) { empty.remove(); }
        var n = event.notification;
        var row = el("li", "msg unread");
        var meta = el("div", "meta");
        meta.appendChild(el("span", "badge s-" + n.level, n.kind));
        meta.appendChild(el("span", null, "just now"));
        row.appendChild(meta);
        var body = n.link ? el("a", "body", n.message) : el("div", "body", n.message);
        if (n.link && n.link.charAt(0) === "/") { body.href = n.link; }
        row.appendChild(body);
        list.insertBefore(row, list.firstChild);
      }
    });
  }

  /* --- a task's chat and event stream --- */
  function diffBlock(diff) {
    var pre = el("pre", "diff");
    String(diff).split("\n").forEach(function (line) {
      var cls = line.indexOf("@@") === 0 ? "hunk" : (line.charAt(0) === "+" ? "add" : (line.charAt(0) === "-" ? "del" : null));
      pre.appendChild(el("span", cls, line + "\n"));
    });
    return pre;
  }

  function testsTable(tests) {
    var table = el("table", "tests");
    var head = el("tr");
    ["test", "result", "time"].forEach(function (h) { head.appendChild(el("th", null, h)); });
    table.appendChild(head);
    tests.forEach(function (t) {
      var row = el("tr");
      var outcome = String(t.status || t.outcome || "");
      row.appendChild(el("td", null, t.name || ""));
      var cell = el("td");
      var ok = outcome === "passed" || outcome === "ok";
      cell.appendChild(el("span", "badge " + (ok ? "s-ok" : (outcome === "skipped" ? "s-queued" : "s-bad")), outcome));
      row.appendChild(cell);
      row.appendChild(el("td", null, t.duration !== undefined ? t.duration + " s" : ""));
      table.appendChild(row);
    });
    return table;
  }

  function renderMessage(m, stream) {
    var li = el("li", "msg " + m.event_type + " " + m.message_type);
    li.id = "message-" + m.id;
    li.dataset.id = m.id;
    var meta = el("div", "meta");
    meta.appendChild(el("span", "badge s-" + (m.sender_type === "human" ? "ok" : m.sender_type === "system" ? "queued" : "info"), m.sender));
    meta.appendChild(el("span", "badge", m.message_type === "request" ? "question" : (m.message_type === "response" ? "answer" : m.event_type)));
    if (m.stage) { meta.appendChild(el("span", null, m.stage)); }
    var when = el("time", null, "just now");
    when.setAttribute("datetime", m.timestamp);
    when.title = m.timestamp;
    meta.appendChild(when);
    li.appendChild(meta);
    if (m.content) { li.appendChild(el("div", "body", m.content)); }
    var data = m.data || {};
    if (m.event_type === "unapproved_action" && data.what) { li.appendChild(el("pre", "flagged", data.what)); }
    if (m.event_type === "code_change" && data.diff) { li.appendChild(diffBlock(data.diff)); }
    if (m.event_type === "test_result") {
      if (Array.isArray(data.tests)) { li.appendChild(testsTable(data.tests)); }
      if (data.passed !== undefined || data.failed !== undefined) {
        li.appendChild(el("div", "small", "passed " + (data.passed || 0) + " · failed " + (data.failed || 0) + " · skipped " + (data.skipped || 0)));
      }
    }
    if (m.message_type === "request") {
      var isPlan = data.kind === "plan";
      var template = document.getElementById(isPlan ? "plan-template" : "answer-template");
      if (template && stream.dataset.canAnswer === "1") {
        var form = template.content.firstElementChild.cloneNode(true);
        form.querySelector("input[name=parent_id]").value = m.id;
        li.appendChild(form);
      }
    }
    if (m.message_type === "response" && m.parent_message_id) {
      var q = document.getElementById("message-" + m.parent_message_id);
      if (q) { q.classList.add("answered"); }
    }
    return li;
  }

  var stream = document.getElementById("stream");
  if (stream && stream.dataset.live === "1") {  /* an older window (?before=) stays as it is */
    var lastId = parseInt(stream.dataset.after || "0", 10);
    live("task", function () { return "/ws/tasks/" + stream.dataset.taskId + "/?after=" + lastId; }, function (event) {
      if (event.type !== "chat.message") { return; }
      var m = event.message;
      if (document.getElementById("message-" + m.id)) { return; }
      var empty = document.getElementById("stream-empty");
      if (empty) { empty.remove(); }
      var atBottom = stream.scrollTop + stream.clientHeight >= stream.scrollHeight - 40;
      stream.appendChild(renderMessage(m, stream));
      if (m.id > lastId) { lastId = m.id; }
      if (atBottom) { stream.scrollTop = stream.scrollHeight; }
    });
  }
  if (stream) { stream.scrollTop = stream.scrollHeight; }

  /* --- the dashboard --- */
  var dashboard = document.getElementById("dashboard");
  if (dashboard) {
    live("dashboard", function () { return "/ws/dashboard/"; }, function (event) {
      if (event.type === "dashboard.snapshot") {
        var s = event.snapshot;
        var values = { approvals_waiting: s.approvals_waiting, claimed: s.claimed, running: s.running, failed: s.failed,
          questions_waiting: s.questions.length };
        Object.keys(s.workers).forEach(function (k) { values["workers." + k] = s.workers[k]; });
        Object.keys(s.depth).forEach(function (k) { values["depth." + k] = s.depth[k]; });
        dashboard.querySelectorAll("[data-key]").forEach(function (node) {
          if (values[node.dataset.key] !== undefined) { node.textContent = String(values[node.dataset.key]); }
        });
        var sessions = document.getElementById("sessions");
        if (sessions) {
          sessions.replaceChildren();
          if (!s.sessions.length) { sessions.appendChild(el("li", "empty", "No active sessions.")); }
          s.sessions.forEach(function (x) {
            var li = el("li");
            li.appendChild(el("code", null, x.session_id));
            li.appendChild(document.createTextNode(" → "));
            if (x.task_id) {
              var a = el("a", null, x.task_title);
              a.href = "/tasks/" + x.task_id + "/";
              li.appendChild(a);
            } else { li.appendChild(el("span", "muted", "no task")); }
            li.appendChild(el("span", "muted small", " (" + x.worker + ")"));
            sessions.appendChild(li);
          });
        }
        var questions = document.getElementById("questions");
        if (questions) {
          questions.replaceChildren();
          if (!s.questions.length) { questions.appendChild(el("li", "empty", "No questions waiting.")); }
          s.questions.forEach(function (q) {
            var li = el("li");
            var a = el("a", null, q.task_title);
            a.href = "/tasks/" + q.task_id + "/#message-" + q.id;
            li.appendChild(a);
            li.appendChild(el("div", "small", q.content));
            questions.appendChild(li);
          });
        }
      } else if (event.type === "dashboard.activity") {
        var list = document.getElementById("activity");
        if (!list) { return; }
        var empty = document.getElementById("activity-empty");
        if (empty) { empty.remove(); }
        var a = event.activity;
        var li = el("li");
        li.appendChild(el("span", "badge", a.message_type === "request" ? "question" : (a.message_type === "response" ? "answer" : a.event_type)));
        li.appendChild(document.createTextNode(" "));
        var link = el("a", null, a.task_title);
        link.href = "/tasks/" + a.task_id + "/";
        li.appendChild(link);
        li.appendChild(el("span", "muted", " · " + a.sender + " · just now"));
        li.appendChild(el("div", "small", a.content));
        list.insertBefore(li, list.firstChild);
        while (list.children.length > 30) { list.removeChild(list.lastChild); }
      }
    });
  }
})();
