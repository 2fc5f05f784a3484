from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _grant_role_view_permissions(sender, using="default", **kwargs) -> None:
    from approvals.roles import grant_role_view_permissions

    grant_role_view_permissions(using=using)


class ApprovalsConfig(AppConfig):
    name = "approvals"

    def ready(self) -> None:
        # A malformed policy or rules file stops every HOL process at start-up, naming the file
        # and the problem, instead of failing the first approval request.
        from approvals.policy import current_policy

        current_policy()
        post_migrate.connect(_grant_role_view_permissions, sender=self, dispatch_uid="approvals.role_view_permissions")
