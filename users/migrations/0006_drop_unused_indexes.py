"""Indexes no query needs, dropped: each one cost every create (bench/users/indexes.py).

- (protocol, id): a protocol filter is served by the primary key walk (a third of the
  users match any protocol).
- The `varchar_pattern_ops` twins Django adds beside a unique CharField: no query matches
  a username by LIKE prefix (search is UPPER(...) LIKE through the trigram index) and a
  blind index is only ever compared whole. Django's own schema changes drop these with
  IF EXISTS, so a later AlterField of either field still migrates.
"""

from django.db import migrations

LIKE_INDEXES = {
    "users_vpnuser_username_22f9d522_like": "username",
    "users_vpnuser_credential_uuid_index_ecfe7d14_like": "credential_uuid_index",
}


class Migration(migrations.Migration):
    dependencies = [
        ("users", "0005_subscriptions"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="vpnuser",
            name="vpnuser_protocol_id",
        ),
        *(
            migrations.RunSQL(
                f"DROP INDEX IF EXISTS {name}",
                reverse_sql=f"CREATE INDEX IF NOT EXISTS {name} ON users_vpnuser ({column} varchar_pattern_ops)",
            )
            for name, column in LIKE_INDEXES.items()
        ),
    ]
