"""Migration operations that only touch PostgreSQL, so `make run` migrates on SQLite too.

The migration state stays the same on both engines (makemigrations sees no change);
only the database work is skipped where the feature does not exist.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

SEARCH_VECTOR_SQL = """
ALTER TABLE users_vpnuser ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('simple', coalesce(username, '')), 'A')
    || setweight(to_tsvector('simple', coalesce(email, '')), 'B')
    || setweight(to_tsvector('simple', coalesce(note, '')), 'C')
) STORED;
CREATE INDEX vpnuser_search_vector ON users_vpnuser USING gin (search_vector);
"""
SEARCH_VECTOR_REVERSE_SQL = "ALTER TABLE users_vpnuser DROP COLUMN IF EXISTS search_vector;"


class AddIndexOnPostgres(migrations.AddIndex):
    """AddIndex for index types SQLite lacks (GIN with an operator class)."""

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


def add_search_vector(apps: Any, schema_editor: Any) -> None:
    # Two-argument to_tsvector: the one-argument form is not immutable and a stored
    # generated column refuses it.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(SEARCH_VECTOR_SQL)


def drop_search_vector(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(SEARCH_VECTOR_REVERSE_SQL)
