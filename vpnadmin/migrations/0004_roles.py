"""The shipped roles: Viewer, Operator, Administrator (rules in vpnadmin/roles.py).

Permissions of apps migrated after this one join the groups through the post_migrate
sync in VpnadminConfig.ready.
"""

from django.db import migrations

from vpnadmin.roles import create_roles_migration


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=["Viewer", "Operator", "Administrator"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("vpnadmin", "0003_audit_context_and_sessions"),
    ]

    operations = [migrations.RunPython(create_roles_migration, remove_roles)]
