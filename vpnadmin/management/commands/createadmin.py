"""Create the first administrator, once, with a random password printed once."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from vpnadmin.audit import audit_record


class Command(BaseCommand):
    help = (
        "Create the first superuser when there is none, with a random password printed "
        "once on standard output. Does nothing when a superuser already exists."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin", help="Login name of the administrator (default: admin).")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        user_model = get_user_model()
        if user_model.objects.filter(is_superuser=True).exists():
            self.stdout.write("An administrator already exists; nothing to do.")
            return
        password = secrets.token_urlsafe(18)
        with transaction.atomic():
            user = user_model.objects.create_superuser(username=username, email="", password=password)
            audit_record(
                actor=None,
                action="admins_create_first",
                target="auth.User",
                count=1,
                object_ids=[user.pk],
                detail={"username": username, "via": "manage.py createadmin"},
            )
        self.stdout.write(self.style.SUCCESS("Created the first administrator. This password is shown only once:"))
        self.stdout.write(f"  username: {username}")
        self.stdout.write(f"  password: {password}")
