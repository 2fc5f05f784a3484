"""Create the role groups of the policy file, and optionally the demo accounts."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from approvals.policy import load_roles
from hol import datadir

# Demo accounts per role: a critical request needs two distinct devops engineers.
DEMO_ACCOUNTS_PER_ROLE = {"devops_engineer": 2}


def demo_accounts(roles) -> list[tuple[str, str]]:
    """(username, role): demo_<role>, then demo_<role>_2 ... where a role has more than one."""
    accounts = []
    for role in roles:
        accounts.append((f"demo_{role}", role))
        accounts.extend((f"demo_{role}_{n}", role) for n in range(2, DEMO_ACCOUNTS_PER_ROLE.get(role, 1) + 1))
    return accounts


class Command(BaseCommand):
    help = (
        "Create the role groups; with --demo-users, the demo accounts, each with its own "
        "random password kept in HOL_DATA_DIR/demo-accounts.json (mode 600)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--demo-users", action="store_true", help="create the demo_<role> accounts")

    def handle(self, *args, demo_users: bool = False, **options) -> None:
        roles = load_roles()
        with transaction.atomic():
            for name in roles:
                Group.objects.get_or_create(name=name)
            self.stdout.write(f"roles: {', '.join(roles)}")
            if demo_users:
                self.create_demo_accounts(roles)

    def create_demo_accounts(self, roles) -> None:
        """Passwords live only in the data dir file: never on a command line, never shared between
        accounts. An account whose password the file does not know (made by an older HOL with one
        shared password) gets a new one."""
        User = get_user_model()
        passwords = datadir.demo_passwords(settings.HOL_DATA_DIR)
        for username, role in demo_accounts(roles):
            user = User.objects.filter(username=username).first()
            if user is not None and username in passwords:
                self.stdout.write(f"  {username}: exists")
                continue
            passwords[username] = secrets.token_urlsafe(12)
            if user is None:
                user = User.objects.create_user(username=username, is_staff=role != "agent")
                user.groups.add(Group.objects.get(name=role))
            user.set_password(passwords[username])
            user.save()
            self.stdout.write(f"  {username}: password set (see {datadir.DEMO_ACCOUNTS_FILE} in the data dir)")
        datadir.save_demo_passwords(settings.HOL_DATA_DIR, passwords)
