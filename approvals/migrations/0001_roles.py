"""Create the role groups named in the policy file (also: manage.py bootstrap_roles)."""

from django.db import migrations


def create_roles(apps, schema_editor):
    from approvals.policy import load_roles

    Group = apps.get_model("auth", "Group")
    for name in load_roles():
        Group.objects.get_or_create(name=name)


class Migration(migrations.Migration):
    dependencies = [("auth", "0012_alter_user_first_name_max_length")]

    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
