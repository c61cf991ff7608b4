-- A write is one statement: inserting its change-log row applies it to `objects` and advances the revision,
-- through this trigger, so a single-object write is one autocommitted statement (one round trip to SQLite's
-- thread and one fsync) instead of a transaction of four statements. Batches insert many change rows in one
-- transaction; the trigger applies them in revision order, so each object ends in its last state.
CREATE TRIGGER changes_apply AFTER INSERT ON changes
BEGIN
    INSERT INTO objects (resource, namespace, name, rev, body)
        SELECT NEW.resource, NEW.namespace, NEW.name, NEW.rev, NEW.body WHERE NEW.type <> 'DELETED'
        ON CONFLICT (resource, namespace, name) DO UPDATE SET rev = excluded.rev, body = excluded.body;
    DELETE FROM objects
        WHERE NEW.type = 'DELETED' AND resource = NEW.resource AND namespace = NEW.namespace AND name = NEW.name;
    UPDATE meta SET value = NEW.rev WHERE key = 'revision' AND value < NEW.rev;
END;
