"""`/metrics` in the Prometheus text format: approval requests by risk level and
status, time to decision by risk level, queue depth, claims and failures.

Every figure is read from the database at scrape time, so all daphne processes answer the same
numbers (per-process counters would each see only their own share of the traffic). Scrapers
authenticate with HOL_METRICS_TOKEN; people with a staff session."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, F, Q, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from approvals.models import ApprovalRequest, RiskLevel
from hol.errors import error_body

DECISION_BUCKETS = (10, 30, 60, 300, 900, 1800, 3600, 7200)  # seconds


class HolCollector:
    def collect(self) -> Iterator[Metric]:
        yield from self._approvals()
        yield from self._decision_times()
        yield from self._queue()

    def _approvals(self) -> Iterator[Metric]:
        total = CounterMetricFamily(
            "hol_approval_requests", "Approval requests made, by risk level", labels=["risk_level"]
        )
        by_status = GaugeMetricFamily(
            "hol_approval_requests_by_status",
            "Approval requests now, by risk level and status",
            labels=["risk_level", "status"],
        )
        counts = dict.fromkeys(RiskLevel.values, 0)
        for level, status, n in ApprovalRequest.objects.values_list("risk_level", "status").annotate(n=Count("pk")):
            counts[level] = counts.get(level, 0) + n
            by_status.add_metric([level, status], n)
        for level, n in counts.items():
            total.add_metric([level], n)
        yield total
        yield by_status

    def _decision_times(self) -> Iterator[Metric]:
        # People's decisions only: auto-approved, expired and cancelled requests were not decided.
        decided = ApprovalRequest.objects.filter(
            status__in=[ApprovalRequest.Status.APPROVED, ApprovalRequest.Status.REJECTED], approver__isnull=False
        )
        duration = F("decided_at") - F("created_at")
        aggregates = {
            f"le_{b}": Count("pk", filter=Q(decided_at__lte=F("created_at") + timedelta(seconds=b)))
            for b in DECISION_BUCKETS
        }
        family = HistogramMetricFamily(
            "hol_approval_decision_seconds", "Time from request to decision, by risk level", labels=["risk_level"]
        )
        rows = {
            row["risk_level"]: row
            for row in decided.values("risk_level").annotate(n=Count("pk"), total=Sum(duration), **aggregates)
        }
        for level in RiskLevel.values:
            row = rows.get(level)
            if row is None:
                family.add_metric([level], [*((str(float(b)), 0) for b in DECISION_BUCKETS), ("+Inf", 0)], 0)
                continue
            total = row["total"]
            seconds = total.total_seconds() if isinstance(total, timedelta) else float(total or 0) / 1e6
            buckets = [(str(float(b)), row[f"le_{b}"]) for b in DECISION_BUCKETS]
            family.add_metric([level], [*buckets, ("+Inf", row["n"])], seconds)
        yield family

    def _queue(self) -> Iterator[Metric]:
        from tasks import selectors as task_selectors
        from tasks.models import Execution

        status = task_selectors.queue_status()
        depth = GaugeMetricFamily("hol_queue_depth", "Queued work orders, by priority", labels=["priority"])
        for priority, n in status["depth"].items():
            depth.add_metric([str(priority)], n)
        yield depth
        held = GaugeMetricFamily("hol_work_orders_held", "Work orders claimed or running now")
        held.add_metric([], status["claimed"] + status["running"])
        yield held
        claims = CounterMetricFamily("hol_work_order_claims", "Claims made (one execution each)")
        claims.add_metric([], Execution.objects.count())
        yield claims
        failures = CounterMetricFamily(
            "hol_failures", "Failed executions and work orders failed for good", labels=["kind"]
        )
        failures.add_metric(["execution"], Execution.objects.filter(status=Execution.Status.FAILED).count())
        failures.add_metric(["work_order"], status["failed"])
        yield failures


registry = CollectorRegistry(auto_describe=False)
registry.register(HolCollector())


def _refusal(request: HttpRequest) -> JsonResponse | None:
    """The scraper presents HOL_METRICS_TOKEN as a bearer token (compared in constant time), or a
    staff member is signed in. Without a configured token only staff get in: the figures name
    nobody, but they describe the queue and the approvers' workload to whoever asks."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, presented = header.partition(" ")
        expected = getattr(settings, "HOL_METRICS_TOKEN", "") or ""
        if scheme.lower() == "bearer" and expected and hmac.compare_digest(presented.encode(), expected.encode()):
            return None
        return JsonResponse(error_body("invalid_token", "the metrics token is not valid"), status=403)
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        body = error_body("not_authenticated", "metrics need HOL_METRICS_TOKEN as a bearer token or a staff session")
        response = JsonResponse(body, status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if not user.is_staff:
        return JsonResponse(error_body("permission_denied", "metrics are for staff"), status=403)
    return None


def metrics_view(request: HttpRequest) -> HttpResponse:
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
