"""The bulk subscription actions offered on the users list (and checked by the bulk view)."""

from __future__ import annotations

BULK_CHOICES = {
    "issue_missing": "Subscription URLs: issue for users without one (CSV)",
    "issue_all": "Subscription URLs: issue new ones for all (CSV; current ones stop)",
    "revoke": "Subscription URLs: revoke",
}
