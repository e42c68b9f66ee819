"""Audit entries are append-only in the database itself, not only in the admin.

UPDATE is refused, except the one the foreign key makes when an actor's account is
deleted (actor_id set to NULL; actor_name keeps who it was). DELETE is refused unless
the transaction opted in with `SET LOCAL vpnadmin.audit_prune = 'on'`, which only the
`pruneaudit` retention command does.
"""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION vpnadmin_audit_append_only() RETURNS trigger AS $$
DECLARE
    unlinked vpnadmin_auditentry;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        unlinked := OLD;
        unlinked.actor_id := NULL;
        IF NEW.actor_id IS NULL AND NEW IS NOT DISTINCT FROM unlinked THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'audit entries cannot be changed (entry %)', OLD.id USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF coalesce(current_setting('vpnadmin.audit_prune', true), '') = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit entries cannot be deleted (entry %); use manage.py pruneaudit', OLD.id
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER vpnadmin_audit_append_only
    BEFORE UPDATE OR DELETE ON vpnadmin_auditentry
    FOR EACH ROW EXECUTE FUNCTION vpnadmin_audit_append_only();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS vpnadmin_audit_append_only ON vpnadmin_auditentry;
DROP FUNCTION IF EXISTS vpnadmin_audit_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("vpnadmin", "0004_roles")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
