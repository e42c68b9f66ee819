"""The three shipped roles, as rules over permissions (so later permissions join them).

- Viewer: sees everything, changes nothing; no credential reveal (that needs a change
  permission on VPN users).
- Operator: VPN users and servers (and their jobs); no Docker hosts, no cache or memory
  controls, no staff, groups or login lockouts, no ending others' sessions.
- Administrator: every permission.

A data migration creates the groups; `sync_roles` runs again after every `migrate`, so
permissions added by later migrations land in the right groups. Custom roles belong in
groups of their own: the shipped three are reset to these rules on each migrate.
"""

from __future__ import annotations

from typing import Any

VIEWER, OPERATOR, ADMINISTRATOR = "Viewer", "Operator", "Administrator"
ROLES = (VIEWER, OPERATOR, ADMINISTRATOR)

# Apps whose rows are plumbing, not something anyone reads in the panel.
_HIDDEN_APPS = {"sessions", "contenttypes"}
# What an operator may change: everything in these apps except the models named after.
_OPERATOR_APPS = {"users", "containers"}
_OPERATOR_EXCLUDED_MODELS = {"containers.dockerhost"}


def _grants(role: str, app_label: str, codename: str, model: str) -> bool:
    if role == ADMINISTRATOR:
        return True
    reads = codename.startswith("view_") and app_label not in _HIDDEN_APPS
    if role == VIEWER:
        return reads
    if role == OPERATOR:
        if reads:
            return True
        return app_label in _OPERATOR_APPS and f"{app_label}.{model}" not in _OPERATOR_EXCLUDED_MODELS
    return False


def sync_roles(apps: Any) -> None:
    """Create the groups if missing and set each one's permissions to its rule."""
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    permissions = list(permission_model.objects.select_related("content_type"))
    for role in ROLES:
        group, _ = group_model.objects.get_or_create(name=role)
        wanted = [
            p.pk for p in permissions if _grants(role, p.content_type.app_label, p.codename, p.content_type.model)
        ]
        group.permissions.set(wanted)


def create_roles_migration(apps: Any, schema_editor: Any) -> None:
    """The data migration: permissions exist only after post_migrate, so make them first."""
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    sync_roles(apps)


def sync_after_migrate(sender: Any, apps: Any = None, **kwargs: Any) -> None:
    """post_migrate: every app's permissions exist now (made first, whatever the app order)."""
    from django.apps import apps as global_apps
    from django.contrib.auth.management import create_permissions

    for app_config in global_apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=kwargs.get("using", "default"))
    sync_roles(global_apps)
