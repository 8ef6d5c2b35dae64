-- Reactions and pins (issue 23). A reaction is one row per (message, emoji, user):
-- counts are count(*) of rows, so concurrent reactions can never lose an update. Every
-- change locks the message's row first (serializing changes of one message) and stamps
-- messages.changed_tx, so the message comes back in `GET /sync`'s updated messages.
-- tenant_id and room_id are kept on each row for erasure, tenant moves and listing.
-- A deleted message's reactions and pin are deleted with it (handlers/edits.rs).
CREATE TABLE IF NOT EXISTS message_reactions (
    tenant_id  TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    message_id TEXT NOT NULL,
    emoji      TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (message_id, emoji, user_id)
);
CREATE INDEX IF NOT EXISTS message_reactions_user ON message_reactions (tenant_id, user_id);
CREATE INDEX IF NOT EXISTS message_reactions_room ON message_reactions (room_id);

CREATE TABLE IF NOT EXISTS message_pins (
    message_id TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    pinned_by  TEXT NOT NULL,
    pinned_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS message_pins_room ON message_pins (room_id, pinned_at DESC);
CREATE INDEX IF NOT EXISTS message_pins_by ON message_pins (tenant_id, pinned_by);
