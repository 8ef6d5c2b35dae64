-- Group commit in one statement: a batch of sends runs as one call, so a batch costs
-- BEGIN, this call, the outbox insert and COMMIT, whatever its size. Each send does
-- what chat_send_message does, in array order (the caller sorts by room, so every
-- writer locks rooms in the same order). A refused send does not raise: its row says
-- 'not_found' or 'forbidden' (with seq 0), and the other sends of the batch go on.
CREATE OR REPLACE FUNCTION chat_send_messages(
    p_tenant TEXT[], p_room TEXT[], p_sender TEXT[], p_sender_name TEXT[], p_id TEXT[],
    p_content TEXT[], p_meta JSONB[], p_client_id TEXT[], p_now TIMESTAMPTZ[])
RETURNS TABLE (
    ord INT, outcome TEXT, id TEXT, room_id TEXT, sender_id TEXT, sender_name TEXT, seq BIGINT, content TEXT,
    meta JSONB, client_msg_id TEXT, created_at TIMESTAMPTZ, edited_at TIMESTAMPTZ, deleted_at TIMESTAMPTZ)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_role TEXT;
    v_seq BIGINT;
    v_dup messages%ROWTYPE;
    v_refused TEXT;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_id, 1), 0) LOOP
        SELECT m.role INTO v_role
        FROM rooms r LEFT JOIN room_members m ON m.room_id = r.id AND m.user_id = p_sender[i]
        WHERE r.id = p_room[i] AND r.tenant_id = p_tenant[i];
        IF NOT FOUND OR v_role IS NULL THEN
            v_refused := CASE WHEN FOUND THEN 'forbidden' ELSE 'not_found' END;
            RETURN QUERY SELECT i, v_refused, p_id[i], p_room[i],
                p_sender[i], p_sender_name[i], 0::BIGINT, p_content[i], p_meta[i], p_client_id[i], p_now[i],
                NULL::TIMESTAMPTZ, NULL::TIMESTAMPTZ;
            CONTINUE;
        END IF;
        -- The room row lock (held to commit) serializes sends and idempotent resends.
        UPDATE rooms SET last_seq = last_seq + 1 WHERE rooms.id = p_room[i] RETURNING last_seq INTO v_seq;
        IF p_client_id[i] IS NOT NULL THEN
            SELECT * INTO v_dup FROM messages m
            WHERE m.room_id = p_room[i] AND m.sender_id = p_sender[i] AND m.client_msg_id = p_client_id[i];
            IF FOUND THEN
                -- Give the seq back: the room's order stays gapless.
                UPDATE rooms SET last_seq = last_seq - 1 WHERE rooms.id = p_room[i];
                RETURN QUERY SELECT i, 'duplicate'::TEXT, v_dup.id, v_dup.room_id, v_dup.sender_id,
                    v_dup.sender_name, v_dup.seq, v_dup.content, v_dup.meta, v_dup.client_msg_id,
                    v_dup.created_at, v_dup.edited_at, v_dup.deleted_at;
                CONTINUE;
            END IF;
        END IF;
        INSERT INTO messages (room_id, seq, id, sender_id, sender_name, content, meta, client_msg_id, created_at)
        VALUES (p_room[i], v_seq, p_id[i], p_sender[i], p_sender_name[i], p_content[i], p_meta[i],
                p_client_id[i], p_now[i]);
        -- Sending means having seen the room.
        INSERT INTO room_cursors (room_id, user_id, delivered_seq, read_seq)
        VALUES (p_room[i], p_sender[i], v_seq, v_seq)
        ON CONFLICT (room_id, user_id) DO UPDATE SET
            delivered_seq = GREATEST(room_cursors.delivered_seq, EXCLUDED.delivered_seq),
            read_seq = GREATEST(room_cursors.read_seq, EXCLUDED.read_seq),
            updated_at = now();
        RETURN QUERY SELECT i, 'created'::TEXT, p_id[i], p_room[i], p_sender[i], p_sender_name[i], v_seq,
            p_content[i], p_meta[i], p_client_id[i], p_now[i], NULL::TIMESTAMPTZ, NULL::TIMESTAMPTZ;
    END LOOP;
END;
$$;
