-- Message search (issue 24): PostgreSQL full-text search over the messages a user may
-- read.
--
-- tenant_residency.search_lang: the text search configuration of the tenant's messages
-- (the `search_language` tenant setting; `simple` — no stemming, no stop words — by
-- default). It lives on the cluster that holds the tenant's messages, so the trigger
-- below and the search query read it where they run.
--
-- messages.tsv: the message's words, kept by a trigger: computed when a message is
-- stored, again when its content is edited, and emptied (NULL) when it is deleted, so
-- an edit is found by its new words at once and a deleted message is gone at once. The
-- send statement (chat_send_batch) is untouched.
--
-- messages_search: one GIN index on (room_id, tsv) (btree_gin for the room column): a
-- search intersects "in one of the caller's rooms" with "has these words" inside the
-- index, so its cost follows the caller's matching messages, not the tenant's.
CREATE EXTENSION IF NOT EXISTS btree_gin;

ALTER TABLE tenant_residency ADD COLUMN IF NOT EXISTS search_lang regconfig NOT NULL DEFAULT 'simple';

ALTER TABLE messages ADD COLUMN IF NOT EXISTS tsv tsvector;

CREATE OR REPLACE FUNCTION chat_message_tsv() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.deleted_at IS NOT NULL OR NEW.content = '' THEN
        NEW.tsv := NULL;
    ELSE
        NEW.tsv := to_tsvector(
            COALESCE((SELECT tr.search_lang FROM rooms r JOIN tenant_residency tr ON tr.tenant_id = r.tenant_id
                      WHERE r.id = NEW.room_id), 'simple'::regconfig),
            NEW.content);
    END IF;
    RETURN NEW;
END;
$$;

DROP TRIGGER IF EXISTS messages_tsv ON messages;
CREATE TRIGGER messages_tsv BEFORE INSERT OR UPDATE OF content, deleted_at ON messages
    FOR EACH ROW EXECUTE FUNCTION chat_message_tsv();

-- Messages stored before this migration.
UPDATE messages m SET tsv = to_tsvector(tr.search_lang, m.content)
FROM rooms r JOIN tenant_residency tr ON tr.tenant_id = r.tenant_id
WHERE r.id = m.room_id AND m.tsv IS NULL AND m.deleted_at IS NULL AND m.content <> '';

CREATE INDEX IF NOT EXISTS messages_search ON messages USING gin (room_id, tsv) WHERE tsv IS NOT NULL;

-- Who left a room, and what they could read in it: every message up to the room's
-- last seq when they left, as it read then (one edited later is not theirs to find).
-- Kept by a trigger on room_members (leaving and being removed alike); a later re-join
-- makes them a member again, and leaving again moves last_seq on. Search reads it; a
-- ban (moderation) deletes the row, so a banned user keeps nothing of the room.
CREATE TABLE IF NOT EXISTS room_departures (
    room_id   TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id   TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    last_seq  BIGINT NOT NULL,
    left_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX IF NOT EXISTS room_departures_user ON room_departures (tenant_id, user_id);

CREATE OR REPLACE FUNCTION chat_member_departed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO room_departures AS d (room_id, user_id, tenant_id, last_seq, left_at)
    SELECT OLD.room_id, OLD.user_id, OLD.tenant_id, r.last_seq, now() FROM rooms r WHERE r.id = OLD.room_id
    ON CONFLICT (room_id, user_id) DO UPDATE SET last_seq = GREATEST(d.last_seq, EXCLUDED.last_seq),
        left_at = EXCLUDED.left_at;
    RETURN OLD;
END;
$$;

DROP TRIGGER IF EXISTS room_members_departed ON room_members;
CREATE TRIGGER room_members_departed AFTER DELETE ON room_members
    FOR EACH ROW EXECUTE FUNCTION chat_member_departed();
