-- One-call sync (issue 24, `GET /sync`): every change a member can catch up on carries
-- the id of the transaction that made it, so "what changed since a token" is "what was
-- written by transactions in [the token's boundary, the boundary now)", a boundary being
-- pg_snapshot_xmin (every transaction below it has ended: no later commit can add a row
-- behind it). New messages already carry theirs (messages.tx, migration 0008).
--
-- messages.changed_tx: the last edit or deletion (a trigger on those columns only, so a
-- search re-index does not count as a change). room_cursors.tx, room_members.tx,
-- room_departures.tx: the last move of a cursor, when a member joined, when they left.
-- Rows older than this migration have none and count as older than any token.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS changed_tx BIGINT;
CREATE INDEX IF NOT EXISTS messages_changed_tx ON messages (changed_tx) WHERE changed_tx IS NOT NULL;
ALTER TABLE room_cursors ADD COLUMN IF NOT EXISTS tx BIGINT;
CREATE INDEX IF NOT EXISTS room_cursors_tx ON room_cursors (tx) WHERE tx IS NOT NULL;
ALTER TABLE room_members ADD COLUMN IF NOT EXISTS tx BIGINT;
CREATE INDEX IF NOT EXISTS room_members_tx ON room_members (tx) WHERE tx IS NOT NULL;
ALTER TABLE room_departures ADD COLUMN IF NOT EXISTS tx BIGINT;
CREATE INDEX IF NOT EXISTS room_departures_tx ON room_departures (tx) WHERE tx IS NOT NULL;

CREATE OR REPLACE FUNCTION chat_stamp_tx() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.tx := pg_current_xact_id()::text::bigint;
    RETURN NEW;
END;
$$;

CREATE OR REPLACE FUNCTION chat_stamp_changed_tx() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed_tx := pg_current_xact_id()::text::bigint;
    RETURN NEW;
END;
$$;

DROP TRIGGER IF EXISTS messages_changed_tx ON messages;
CREATE TRIGGER messages_changed_tx BEFORE UPDATE OF content, edited_at, deleted_at ON messages
    FOR EACH ROW EXECUTE FUNCTION chat_stamp_changed_tx();
DROP TRIGGER IF EXISTS room_cursors_tx ON room_cursors;
CREATE TRIGGER room_cursors_tx BEFORE INSERT OR UPDATE ON room_cursors
    FOR EACH ROW EXECUTE FUNCTION chat_stamp_tx();
DROP TRIGGER IF EXISTS room_members_tx ON room_members;
CREATE TRIGGER room_members_tx BEFORE INSERT OR UPDATE ON room_members
    FOR EACH ROW EXECUTE FUNCTION chat_stamp_tx();
DROP TRIGGER IF EXISTS room_departures_tx ON room_departures;
CREATE TRIGGER room_departures_tx BEFORE INSERT OR UPDATE ON room_departures
    FOR EACH ROW EXECUTE FUNCTION chat_stamp_tx();
