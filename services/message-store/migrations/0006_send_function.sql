-- The send path as one server-side function: membership check, the room's next seq,
-- the idempotent-resend check, the insert and the sender's cursors, in one
-- statement. PL/pgSQL keeps the plans of these statements per session, where
-- separately sent ad-hoc statements would each be parsed and planned again.
-- Errors: 'chat:not_found' (no such room in the tenant), 'chat:forbidden' (not a member).
CREATE OR REPLACE FUNCTION chat_send_message(
    p_tenant TEXT, p_room TEXT, p_sender TEXT, p_sender_name TEXT, p_id TEXT,
    p_content TEXT, p_meta JSONB, p_client_id TEXT, p_now TIMESTAMPTZ)
RETURNS TABLE (
    outcome TEXT, id TEXT, room_id TEXT, sender_id TEXT, sender_name TEXT, seq BIGINT, content TEXT,
    meta JSONB, client_msg_id TEXT, created_at TIMESTAMPTZ, edited_at TIMESTAMPTZ, deleted_at TIMESTAMPTZ)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_role TEXT;
    v_seq BIGINT;
BEGIN
    SELECT m.role INTO v_role
    FROM rooms r LEFT JOIN room_members m ON m.room_id = r.id AND m.user_id = p_sender
    WHERE r.id = p_room AND r.tenant_id = p_tenant;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'chat:not_found';
    END IF;
    IF v_role IS NULL THEN
        RAISE EXCEPTION 'chat:forbidden';
    END IF;
    -- Taking the seq locks the room row, which also serializes idempotent resends.
    UPDATE rooms SET last_seq = last_seq + 1 WHERE rooms.id = p_room RETURNING last_seq INTO v_seq;
    IF p_client_id IS NOT NULL THEN
        RETURN QUERY
            SELECT 'duplicate'::TEXT, m.id, m.room_id, m.sender_id, m.sender_name, m.seq, m.content,
                   m.meta, m.client_msg_id, m.created_at, m.edited_at, m.deleted_at
            FROM messages m
            WHERE m.room_id = p_room AND m.sender_id = p_sender AND m.client_msg_id = p_client_id;
        IF FOUND THEN
            -- Give the seq back: the room's order stays gapless.
            UPDATE rooms SET last_seq = last_seq - 1 WHERE rooms.id = p_room;
            RETURN;
        END IF;
    END IF;
    INSERT INTO messages (room_id, seq, id, sender_id, sender_name, content, meta, client_msg_id, created_at)
    VALUES (p_room, v_seq, p_id, p_sender, p_sender_name, p_content, p_meta, p_client_id, p_now);
    -- Sending means having seen the room.
    INSERT INTO room_cursors (room_id, user_id, delivered_seq, read_seq) VALUES (p_room, p_sender, v_seq, v_seq)
    ON CONFLICT (room_id, user_id) DO UPDATE SET
        delivered_seq = GREATEST(room_cursors.delivered_seq, EXCLUDED.delivered_seq),
        read_seq = GREATEST(room_cursors.read_seq, EXCLUDED.read_seq),
        updated_at = now();
    RETURN QUERY SELECT 'created'::TEXT, p_id, p_room, p_sender, p_sender_name, v_seq, p_content,
                        p_meta, p_client_id, p_now, NULL::TIMESTAMPTZ, NULL::TIMESTAMPTZ;
END;
$$;
