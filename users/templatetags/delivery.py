"""`{% delivery_missing user as reason %}`: what keeps a user from receiving working links."""

from __future__ import annotations

from django import template

from users.delivery.profiles import Unavailable, readiness
from users.models import VpnUser
from users.subscriptions.forms import BULK_CHOICES

register = template.Library()


@register.simple_tag
def delivery_missing(user: VpnUser) -> str:
    """A sentence naming what is missing, or "" when links can be rendered (no secret is read)."""
    ready = readiness(user)
    return ready.reason if isinstance(ready, Unavailable) else ""


@register.simple_tag
def subscription_bulk_choices() -> list[tuple[str, str]]:
    """The subscription actions of the users list's bulk bar (revoke, issue as CSV)."""
    return list(BULK_CHOICES.items())
