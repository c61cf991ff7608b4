-- Lists at an older revision read the change log, by key: each key's last change at or before the revision.
-- Compaction now keeps that change for every key (as etcd does), and this index serves both; watches by
-- resource read the log from a revision onward, in revision order, through its primary key.
DROP INDEX changes_by_resource;
CREATE INDEX changes_by_key ON changes (resource, namespace, name, rev);
-- Objects whose every change an earlier compaction dropped get their current state back in the log (under
-- the revision they were written at; the trigger rewrites them unchanged), so the log holds every key.
INSERT INTO changes (rev, resource, namespace, name, type, body)
    SELECT rev, resource, namespace, name, 'MODIFIED', body FROM objects
    WHERE rev NOT IN (SELECT rev FROM changes);
