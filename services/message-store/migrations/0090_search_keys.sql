-- Search keyed by room (issue 24's target: p99 <= 50 ms for a tenant with 1,000,000
-- messages in 1,000 rooms, the caller in 50).
--
-- Migration 0030 indexed (room_id, tsv) in one GIN index (btree_gin for the room). A
-- search then intersects, inside the index, the posting list of each word, which spans
-- the whole table, with the caller's rooms: for a common word that is hundreds of
-- thousands of entries walked per search (150 ms for a word in a third of the messages,
-- measured), and a short prefix expands to many such lists.
--
-- messages.search_keys: the message's lexemes, each prefixed with a short key of its
-- room (`chat_search_key`: 8 hex digits of md5(room_id) and '/'), without positions.
-- `messages_search_keys` (GIN) then finds "this word in this room" as one small posting
-- list, and "this prefix in this room" as a range of the room's own keys, so a search's
-- index work follows the caller's matches in the caller's rooms. Two rooms whose keys
-- collide only share candidates: the search statement checks `room_id` and the exact
-- query (`tsv @@ query`, phrases included) on every row it keeps.
--
-- Kept by the same trigger as `tsv` (now also on UPDATE OF tsv, so a re-index after a
-- language change re-keys the message). `messages_search` is dropped: nothing else
-- reads it.
CREATE OR REPLACE FUNCTION chat_search_key(room text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT left(md5(room), 8) || '/' $$;

-- The room-keyed lexemes of `tsv` (NULL for NULL). PL/pgSQL so the room's key is
-- computed once, not once per lexeme: 8.7 µs per message against 16 (measured).
CREATE OR REPLACE FUNCTION chat_search_keys(room text, tsv tsvector) RETURNS tsvector
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    k text := chat_search_key(room);
BEGIN
    IF tsv IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN array_to_tsvector(ARRAY(SELECT k || l FROM unnest(tsvector_to_array(tsv)) l));
END;
$$;

-- `q` over `room`'s keys: every lexeme prefixed with the room's key (prefix matches stay
-- prefix matches), phrase operators turned into AND (the keys have no positions; the
-- caller checks the phrase on `tsv`). NULL when `q` has no lexeme (only stop words).
-- The search queries reaching it have only lexemes, `&`, `<->` and `:*` (SearchQuery).
CREATE OR REPLACE FUNCTION chat_search_keys_query(room text, q tsquery) RETURNS tsquery
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN numnode(q) = 0 THEN NULL ELSE
        regexp_replace(
            regexp_replace(q::text, '''((?:[^'']|'''')*)''', '''' || chat_search_key(room) || '\1''', 'g'),
            '<[0-9-]+>', '&', 'g')::tsquery END
$$;

ALTER TABLE messages ADD COLUMN IF NOT EXISTS search_keys tsvector;

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
    NEW.search_keys := chat_search_keys(NEW.room_id, NEW.tsv);
    RETURN NEW;
END;
$$;

DROP TRIGGER IF EXISTS messages_tsv ON messages;
CREATE TRIGGER messages_tsv BEFORE INSERT OR UPDATE OF content, deleted_at, tsv ON messages
    FOR EACH ROW EXECUTE FUNCTION chat_message_tsv();

-- Messages stored before this migration.
UPDATE messages SET search_keys = chat_search_keys(room_id, tsv)
WHERE tsv IS NOT NULL AND search_keys IS NULL;

-- A small pending list (GIN's fastupdate): a search scans it once per room it looks
-- in, so the default 4 MB would cost every search dearly between two vacuums.
CREATE INDEX IF NOT EXISTS messages_search_keys ON messages USING gin (search_keys)
    WITH (gin_pending_list_limit = 256) WHERE search_keys IS NOT NULL;
DROP INDEX IF EXISTS messages_search;
