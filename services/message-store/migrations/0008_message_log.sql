-- The messages table as the ordered log events are published from (no outbox row per
-- message), and set-based group commit.
--
-- tx: the id of the transaction that stored the message (pg_current_xact_id). Readers
-- that follow the log in commit order (the offline-notification feed, the relay that
-- republishes after a crash) take only transactions older than the oldest one still
-- running (pg_snapshot_xmin), so no later commit can add rows behind them. Messages
-- stored before this column existed have none and are not part of the feed.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS tx BIGINT;
CREATE INDEX IF NOT EXISTS messages_tx ON messages (tx) WHERE tx IS NOT NULL;

-- One row per running message-store: the lease it publishes under and a watermark.
-- Every batch of this publisher whose transaction id is below confirmed_tx reached the
-- bus. A publisher renews its lease every few seconds; when a lease runs out (the
-- process died between commit and publish), any replica republishes the messages from
-- confirmed_tx on and deletes the row. Republishing is harmless: gateways drop a seq
-- they have already delivered, notification reads the log itself.
CREATE TABLE IF NOT EXISTS publishers (
    id           TEXT PRIMARY KEY,
    bus_prefix   TEXT NOT NULL,
    confirmed_tx BIGINT NOT NULL,
    lease_until  TIMESTAMPTZ NOT NULL
);

-- Group commit as two set-based statements, in one call: lock the batch's rooms (in
-- room id order, the same for every writer, so batches never deadlock), then, with a
-- snapshot taken after the locks (so a concurrent batch's resends are seen), check
-- access and idempotency for the whole batch, bump each room's last_seq once by its
-- number of new messages, insert every new message in one multi-row insert, and move
-- each (room, sender)'s cursors once. A refused send does not raise: its row says
-- 'not_found' or 'forbidden' (seq 0). A resend (same room, sender and client id as a
-- stored message, or as an earlier send of the same batch) says 'duplicate' and carries
-- the stored message. Rows come back with their input position (ord) and the
-- transaction id.
CREATE OR REPLACE FUNCTION chat_send_batch(
    p_tenant TEXT[], p_room TEXT[], p_sender TEXT[], p_sender_name TEXT[], p_id TEXT[],
    p_content TEXT[], p_meta JSONB[], p_client_id TEXT[], p_now TIMESTAMPTZ[])
RETURNS TABLE (
    ord INT, outcome TEXT, id TEXT, room_id TEXT, sender_id TEXT, sender_name TEXT, seq BIGINT, content TEXT,
    meta JSONB, client_msg_id TEXT, created_at TIMESTAMPTZ, edited_at TIMESTAMPTZ, deleted_at TIMESTAMPTZ,
    tx BIGINT)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_tx BIGINT := pg_current_xact_id()::text::bigint;
BEGIN
    PERFORM 1 FROM rooms r WHERE r.id = ANY (p_room) ORDER BY r.id FOR UPDATE;
    RETURN QUERY
    WITH input AS (
        SELECT i AS ord, p_tenant[i] AS tenant, p_room[i] AS room, p_sender[i] AS sender,
               p_sender_name[i] AS sender_name, p_id[i] AS id, p_content[i] AS content, p_meta[i] AS meta,
               p_client_id[i] AS client_id, p_now[i] AS at
        FROM generate_subscripts(p_id, 1) AS i
    ),
    checked AS (
        SELECT i.*, r.id IS NOT NULL AS room_found, mb.user_id IS NOT NULL AS member
        FROM input i
        LEFT JOIN rooms r ON r.id = i.room AND r.tenant_id = i.tenant
        LEFT JOIN room_members mb ON mb.room_id = r.id AND mb.user_id = i.sender
    ),
    -- The first send of each (room, sender, client id) in the batch; later ones repeat it.
    firsts AS (
        SELECT c.room, c.sender, c.client_id, min(c.ord) AS first_ord
        FROM checked c WHERE c.member AND c.client_id IS NOT NULL
        GROUP BY c.room, c.sender, c.client_id
    ),
    -- Sends whose client id is already stored (found through the idempotency index).
    stored AS (
        SELECT c.ord, m.*
        FROM checked c
        JOIN messages m ON m.room_id = c.room AND m.sender_id = c.sender AND m.client_msg_id = c.client_id
        WHERE c.member AND c.client_id IS NOT NULL
    ),
    fresh AS (
        SELECT c.*, row_number() OVER (PARTITION BY c.room ORDER BY c.ord) AS rn
        FROM checked c
        LEFT JOIN firsts f ON f.room = c.room AND f.sender = c.sender AND f.client_id = c.client_id
        WHERE c.member
          AND NOT EXISTS (SELECT 1 FROM stored s WHERE s.ord = c.ord)
          AND (c.client_id IS NULL OR f.first_ord = c.ord)
    ),
    counts AS (
        SELECT f.room, count(*) AS n FROM fresh f GROUP BY f.room
    ),
    bumped AS (
        UPDATE rooms r SET last_seq = r.last_seq + counts.n FROM counts
        WHERE r.id = counts.room
        RETURNING r.id AS room, r.last_seq
    ),
    numbered AS (
        SELECT f.*, b.last_seq - cn.n + f.rn AS seq
        FROM fresh f JOIN counts cn ON cn.room = f.room JOIN bumped b ON b.room = f.room
    ),
    inserted AS (
        INSERT INTO messages (room_id, seq, id, sender_id, sender_name, content, meta, client_msg_id, created_at, tx)
        SELECT n.room, n.seq, n.id, n.sender, n.sender_name, n.content, n.meta, n.client_id, n.at, v_tx
        FROM numbered n
        RETURNING 1
    ),
    -- Sending means having seen the room.
    cursors AS (
        INSERT INTO room_cursors AS rc (room_id, user_id, delivered_seq, read_seq)
        SELECT n.room, n.sender, max(n.seq), max(n.seq) FROM numbered n GROUP BY n.room, n.sender
        ON CONFLICT (room_id, user_id) DO UPDATE SET
            delivered_seq = GREATEST(rc.delivered_seq, EXCLUDED.delivered_seq),
            read_seq = GREATEST(rc.read_seq, EXCLUDED.read_seq),
            updated_at = now()
        RETURNING 1
    )
    SELECT n.ord::int, 'created'::text, n.id, n.room, n.sender, n.sender_name, n.seq, n.content, n.meta,
           n.client_id, n.at, NULL::timestamptz, NULL::timestamptz, v_tx
    FROM numbered n
    UNION ALL
    SELECT s.ord::int, 'duplicate'::text, s.id, s.room_id, s.sender_id, s.sender_name, s.seq, s.content, s.meta,
           s.client_msg_id, s.created_at, s.edited_at, s.deleted_at, v_tx
    FROM stored s
    UNION ALL
    -- Repeats within the batch carry the message their first send stores.
    SELECT c.ord::int, 'duplicate'::text, n.id, n.room, n.sender, n.sender_name, n.seq, n.content, n.meta,
           n.client_id, n.at, NULL::timestamptz, NULL::timestamptz, v_tx
    FROM checked c
    JOIN firsts f ON f.room = c.room AND f.sender = c.sender AND f.client_id = c.client_id AND f.first_ord <> c.ord
    JOIN numbered n ON n.ord = f.first_ord
    WHERE NOT EXISTS (SELECT 1 FROM stored s WHERE s.ord = c.ord)
    UNION ALL
    SELECT c.ord::int, CASE WHEN c.room_found THEN 'forbidden' ELSE 'not_found' END, c.id, c.room, c.sender,
           c.sender_name, 0::bigint, c.content, c.meta, c.client_id, c.at, NULL::timestamptz, NULL::timestamptz,
           v_tx
    FROM checked c WHERE NOT c.member;
END;
$$;
