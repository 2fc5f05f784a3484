from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"

    def ready(self) -> None:
        # A malformed policy or rules file stops every HOL process at start-up, naming the file
        # and the problem, instead of failing the first approval request.
        from approvals.policy import current_policy

        current_policy()
