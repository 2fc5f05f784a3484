"""What the role groups may look at in the admin beyond approval requests: the tasks, work orders,
executions, sessions and audit entries an approval concerns. Deciding stays with the services."""

from __future__ import annotations

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission

from approvals.policy import current_policy

VIEWABLE = (
    ("approvals", "approvalrequest"),
    ("approvals", "approvaldecision"),
    ("tasks", "task"),
    ("tasks", "workorder"),
    ("tasks", "execution"),
    ("tasks", "agentsession"),
    ("audit", "auditentry"),
)


def people_roles() -> list[str]:
    """Roles that may approve something (developer, tech_lead, devops_engineer); agents none."""
    return [name for name, role in current_policy().roles.items() if role.may_approve]


def grant_role_view_permissions(*, using: str = "default") -> None:
    """Give every people role the view permission on the models an approval concerns. Idempotent;
    runs after every migrate so a new database, a new role in the policy file or a flushed test
    database all end up the same."""
    for app_label in {app_label for app_label, _ in VIEWABLE}:
        # The permission rows are made by auth's own post_migrate handler, per app; make sure they
        # exist whatever order the apps' signals ran in.
        create_permissions(global_apps.get_app_config(app_label), verbosity=0, using=using)
    permissions = [
        Permission.objects.using(using).get(content_type__app_label=app_label, codename=f"view_{model}")
        for app_label, model in VIEWABLE
    ]
    for name in people_roles():
        group, _ = Group.objects.using(using).get_or_create(name=name)
        group.permissions.add(*permissions)
