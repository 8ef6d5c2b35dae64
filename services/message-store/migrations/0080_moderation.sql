-- Room moderation (issue 24, stages 4-5): roles, bans, mutes, slow mode, flags and the
-- moderation log.
--
-- Roles: owner, admin, moderator, member. Every group or channel had one admin until
-- now, its creator (only admins could add admins); the creator becomes the owner, other
-- admins stay admins. A DM's creator becomes its owner too (DM members cannot change,
-- so the role grants nothing there but keeps one rule for every room).
ALTER TABLE room_members DROP CONSTRAINT IF EXISTS room_members_role_check;
ALTER TABLE room_members ADD CONSTRAINT room_members_role_check
    CHECK (role IN ('owner', 'admin', 'moderator', 'member'));
UPDATE room_members m SET role = 'owner'
FROM rooms r
WHERE r.id = m.room_id AND m.user_id = r.created_by AND m.role = 'admin';

-- Slow mode: a member (below moderator) sends at most once per slow_mode_secs (0: off).
ALTER TABLE rooms ADD COLUMN IF NOT EXISTS slow_mode_secs INTEGER NOT NULL DEFAULT 0
    CHECK (slow_mode_secs >= 0 AND slow_mode_secs <= 86400);
-- When each member may send next in a slow room: the send statement claims the row
-- (an upsert that only moves it forward once the wait is over), so two gateways, or two
-- message-store instances, cannot both let a send through inside one window.
CREATE TABLE IF NOT EXISTS room_slow_sends (
    room_id   TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id   TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    last_at   TIMESTAMPTZ NOT NULL,
    next_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX IF NOT EXISTS room_slow_sends_user ON room_slow_sends (tenant_id, user_id);

-- Bans and mutes: one row per (room, user) while in force; expires_at NULL is for good.
-- An expired row counts as lifted (every reader compares expires_at with now) and is
-- replaced by the next ban or mute.
CREATE TABLE IF NOT EXISTS room_bans (
    room_id    TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL,
    tenant_id  TEXT NOT NULL,
    reason     TEXT,
    expires_at TIMESTAMPTZ,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX IF NOT EXISTS room_bans_user ON room_bans (tenant_id, user_id);
CREATE TABLE IF NOT EXISTS room_mutes (
    room_id    TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL,
    tenant_id  TEXT NOT NULL,
    reason     TEXT,
    expires_at TIMESTAMPTZ,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX IF NOT EXISTS room_mutes_user ON room_mutes (tenant_id, user_id);

-- Flags: a member reports a message once (again: the first flag stands); moderators
-- resolve them. sender_id is the flagged message's sender, so erasing a user finds the
-- flags about their messages.
CREATE TABLE IF NOT EXISTS message_flags (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    room_id     TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    message_id  TEXT NOT NULL,
    sender_id   TEXT NOT NULL,
    flagged_by  TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    resolved_at TIMESTAMPTZ,
    resolved_by TEXT,
    resolution  TEXT,
    UNIQUE (message_id, flagged_by)
);
CREATE INDEX IF NOT EXISTS message_flags_room ON message_flags (room_id, created_at DESC);
CREATE INDEX IF NOT EXISTS message_flags_open ON message_flags (tenant_id, created_at DESC) WHERE resolved_at IS NULL;

-- The moderation log: who did what to whom, when and why. Rows name users by id; an
-- erased user's id becomes the erased placeholder and the reasons of rows about them go.
CREATE TABLE IF NOT EXISTS moderation_log (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL,
    room_id        TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    actor_id       TEXT NOT NULL,
    action         TEXT NOT NULL,
    target_user_id TEXT,
    message_id     TEXT,
    reason         TEXT,
    detail         JSONB,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS moderation_log_room ON moderation_log (room_id, created_at DESC, id);
CREATE INDEX IF NOT EXISTS moderation_log_tenant ON moderation_log (tenant_id, created_at DESC, id);
