from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter
from rest_framework_simplejwt.views import TokenRefreshView, TokenVerifyView

from approvals.api import ApprovalViewSet, RiskAssessView
from approvals.metrics import metrics_view
from approvals.pages import approval_decide, approval_inbox
from approvals.wait_api import approval_detail
from audit.api import AuditViewSet
from audit.pages import audit_page, audit_verify_now
from chat.api import ChatMessagesView, WsTicketView, chat_message_reply
from chat.pages import question_answer
from hol.auth import ThrottledTokenObtainPairView, admin_login
from hol.health import healthz, version
from hol.pages import LoginView, dashboard
from notifications.api import NotificationViewSet
from notifications.pages import notification_list, notification_read
from tasks.api import QueueViewSet, SessionViewSet, TaskViewSet, WorkerViewSet
from tasks.claim_wait import queue_claim
from tasks.pages import task_cancel, task_detail, task_list

router = DefaultRouter()
router.trailing_slash = "/?"  # both /api/v1/tasks and /api/v1/tasks/ answer
router.register("tasks", TaskViewSet, basename="task")
router.register("workers", WorkerViewSet, basename="worker")
router.register("queue", QueueViewSet, basename="queue")
router.register("sessions", SessionViewSet, basename="session")
router.register("audit", AuditViewSet, basename="audit")
router.register("approvals", ApprovalViewSet, basename="approval")
router.register("notifications", NotificationViewSet, basename="notification")

admin.site.site_header = "HOL"
admin.site.site_title = "HOL admin"
admin.site.index_title = "Human Operations Layer"

urlpatterns = [
    # Ahead of the admin's own: the same login, telling how demo accounts sign in when they exist.
    path("admin/login/", admin_login, name="admin-login"),
    path("admin/", admin.site.urls),
    path("api/v1/auth/token", ThrottledTokenObtainPairView.as_view(), name="token"),
    path("api/v1/auth/token/refresh", TokenRefreshView.as_view(), name="token-refresh"),
    path("api/v1/auth/token/verify", TokenVerifyView.as_view(), name="token-verify"),
    # An async view (the long-poll must hold no thread while it waits), ahead of the router.
    re_path(r"^api/v1/approvals/(?P<pk>[0-9a-fA-F-]{32,36})/?$", approval_detail, name="approval-detail"),
    re_path(r"^api/v1/queue/claim/?$", queue_claim, name="queue-claim"),
    path("api/v1/risk/assess", RiskAssessView.as_view(), name="risk-assess"),
    # --- chat, live channels and pages ---
    re_path(r"^api/v1/chat/messages/?$", ChatMessagesView.as_view(), name="chat-messages"),
    re_path(r"^api/v1/chat/messages/(?P<pk>[0-9]{1,18})/reply/?$", chat_message_reply, name="chat-reply"),
    re_path(r"^api/v1/ws/ticket/?$", WsTicketView.as_view(), name="ws-ticket"),
    path("login/", LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", dashboard, name="page-dashboard"),
    path("tasks/", task_list, name="page-tasks"),
    path("tasks/<uuid:pk>/", task_detail, name="page-task"),
    path("tasks/<uuid:pk>/cancel", task_cancel, name="page-task-cancel"),
    path("tasks/<uuid:pk>/answer", question_answer, name="page-task-answer"),
    path("approvals/", approval_inbox, name="page-approvals"),
    path("approvals/<uuid:pk>/decide", approval_decide, name="page-approval-decide"),
    path("notifications/", notification_list, name="page-notifications"),
    path("notifications/<int:pk>/read", notification_read, name="page-notification-read"),
    path("audit/", audit_page, name="page-audit"),
    path("audit/verify", audit_verify_now, name="page-audit-verify"),
    # --- end chat, live channels and pages ---
    path("api/v1/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("metrics", metrics_view, name="metrics"),
    path("healthz", healthz, name="healthz"),
    path("version", version, name="version"),
]
