"""The subscription of a VPN user: the hash of its token, one per user."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Subscription(models.Model):
    user = models.OneToOneField(
        "users.VpnUser", on_delete=models.CASCADE, primary_key=True, related_name="subscription"
    )
    # SHA-256 of the token, hex. The token has 192 random bits: no salt or slow hash is
    # needed against guessing, and the lookup stays one unique-index probe.
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    issued_at = models.DateTimeField(default=timezone.now)

    class Meta:
        app_label = "users"
        verbose_name = "subscription URL"

    def __str__(self) -> str:
        return f"subscription of user {self.user_id}"

    def __repr__(self) -> str:
        return f"<Subscription user={self.user_id}>"
