-- The send statements compute a new message's search vector and search keys
-- themselves, set-based (send_batch.rs: `search_columns!`), with the same expressions
-- as chat_message_tsv(): the room's tenant's search language ('simple' without one),
-- no vector for empty content, every lexeme prefixed with the room's key. The trigger
-- then runs on insert only for rows that arrive without a vector (other writers, and
-- messages without text, whose vector is NULL either way); a PL/pgSQL call per stored
-- message, with two queries of its own, was a fifth of the writer backend's CPU under
-- load. Updates (edits, deletions, a vector reset to NULL for a rebuild) still
-- recompute through the trigger, as before.
DROP TRIGGER IF EXISTS messages_tsv ON messages;
CREATE TRIGGER messages_tsv BEFORE INSERT ON messages
    FOR EACH ROW WHEN (NEW.tsv IS NULL OR NEW.search_keys IS NULL) EXECUTE FUNCTION chat_message_tsv();
DROP TRIGGER IF EXISTS messages_tsv_update ON messages;
CREATE TRIGGER messages_tsv_update BEFORE UPDATE OF content, deleted_at, tsv ON messages
    FOR EACH ROW EXECUTE FUNCTION chat_message_tsv();
