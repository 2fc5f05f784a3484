"""Create the role groups of the policy file, and optionally one demo user per role."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from approvals.policy import load_roles


class Command(BaseCommand):
    help = "Create the role groups (SPEC §3.1); with --demo-users, one demo user per role."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--demo-users", action="store_true", help="create demo_<role> users")
        parser.add_argument("--password", help="password for new demo users (default: random, printed)")

    def handle(self, *args, demo_users: bool = False, password: str | None = None, **options) -> None:
        roles = load_roles()
        User = get_user_model()
        with transaction.atomic():
            for name in roles:
                Group.objects.get_or_create(name=name)
            self.stdout.write(f"roles: {', '.join(roles)}")
            if not demo_users:
                return
            for name in roles:
                username = f"demo_{name}"
                if User.objects.filter(username=username).exists():
                    self.stdout.write(f"  {username}: exists (password unchanged)")
                    continue
                user_password = password or secrets.token_urlsafe(9)
                user = User.objects.create_user(username=username, password=user_password, is_staff=name != "agent")
                user.groups.add(Group.objects.get(name=name))
                self.stdout.write(f"  {username}: password {user_password}")
