"""People and agent accounts from the command line: `hol_user add NAME --role ROLE [--staff]`,
`hol_user list`, `hol_user password NAME`, `hol_user deactivate NAME`.

Passwords are generated and printed once, never taken from the command line (where `ps` and the
shell history would keep them). A new password or a deactivation revokes the account's tokens.
"""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from approvals.policy import load_roles


class Command(BaseCommand):
    help = "Add, list, re-password or deactivate HOL accounts; generated passwords are printed once."

    def add_arguments(self, parser) -> None:
        verbs = parser.add_subparsers(dest="verb", required=True)
        add = verbs.add_parser("add", help="create an account with a role and a generated password")
        add.add_argument("username")
        add.add_argument("--role", required=True, help="a role of the policy file (developer, devops_engineer, ...)")
        add.add_argument("--staff", action="store_true", help="may sign in to the admin")
        add.add_argument("--email", default="", help="where notification email goes")
        verbs.add_parser("list", help="every account with its roles")
        password = verbs.add_parser("password", help="give an account a new generated password")
        password.add_argument("username")
        deactivate = verbs.add_parser("deactivate", help="the account can no longer sign in or use its tokens")
        deactivate.add_argument("username")

    def handle(self, *args, verb: str, **options) -> None:
        getattr(self, f"handle_{verb}")(**options)

    def handle_add(self, *, username: str, role: str, staff: bool, email: str, **options) -> None:
        roles = load_roles()
        if role not in roles:
            raise CommandError(f"unknown role {role!r}; roles: {', '.join(roles)}")
        User = get_user_model()
        password = secrets.token_urlsafe(12)
        with transaction.atomic():
            if User.objects.filter(username=username).exists():
                raise CommandError(f"an account named {username!r} already exists")
            user = User.objects.create_user(username=username, email=email, password=password, is_staff=staff)
            user.groups.add(Group.objects.get_or_create(name=role)[0])
        self.stdout.write(f"{username} ({role}{', staff' if staff else ''}) created; password (shown once): {password}")

    def handle_list(self, **options) -> None:
        for user in get_user_model().objects.order_by("username").prefetch_related("groups"):
            roles = ",".join(sorted(group.name for group in user.groups.all())) or "-"
            flags = " ".join(flag for flag, on in (("staff", user.is_staff), ("inactive", not user.is_active)) if on)
            self.stdout.write(f"{user.username}\t{roles}\t{flags}".rstrip())

    def handle_password(self, *, username: str, **options) -> None:
        user = self._get(username)
        password = secrets.token_urlsafe(12)
        user.set_password(password)
        user.save()
        self.stdout.write(f"{username}: new password (shown once): {password}; earlier tokens no longer work")

    def handle_deactivate(self, *, username: str, **options) -> None:
        user = self._get(username)
        user.is_active = False
        user.save()
        self.stdout.write(f"{username}: deactivated; its tokens no longer work")

    def _get(self, username: str):
        try:
            return get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"no account named {username!r}") from None
