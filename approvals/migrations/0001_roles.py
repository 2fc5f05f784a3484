"""Create the role groups HOL shipped with. The list is written out here, not read from the policy
file: a migration must do the same thing whenever it runs. Roles added to the policy later are
created by `manage.py bootstrap_roles`."""

from django.db import migrations

ROLES = ("developer", "tech_lead", "devops_engineer", "agent")


def create_roles(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in ROLES:
        Group.objects.get_or_create(name=name)


class Migration(migrations.Migration):
    dependencies = [("auth", "0012_alter_user_first_name_max_length")]

    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
