-- Per-member delivered and read cursors. They only move forward, and read implies
-- delivered. Unread counts come from these, never from counting rows.
CREATE TABLE IF NOT EXISTS room_cursors (
    room_id       TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id       TEXT NOT NULL,
    delivered_seq BIGINT NOT NULL DEFAULT 0,
    read_seq      BIGINT NOT NULL DEFAULT 0,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, user_id)
);
