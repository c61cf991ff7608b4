-- Every object, as its latest JSON document. `rev` is its resourceVersion.
CREATE TABLE objects (
    resource  TEXT    NOT NULL,
    namespace TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    rev       INTEGER NOT NULL,
    body      TEXT    NOT NULL,
    PRIMARY KEY (resource, namespace, name)
) WITHOUT ROWID;

-- The change log watches resume from. One row per committed write; compacted from the oldest end.
CREATE TABLE changes (
    rev       INTEGER PRIMARY KEY,
    resource  TEXT    NOT NULL,
    namespace TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    type      TEXT    NOT NULL CHECK (type IN ('ADDED', 'MODIFIED', 'DELETED')),
    body      TEXT    NOT NULL
);
CREATE INDEX changes_by_resource ON changes (resource, rev);

-- Store-wide facts: the last revision handed out and the oldest revision still in `changes`.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('revision', 0), ('compacted', 0);
