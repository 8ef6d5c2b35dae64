-- Tenants, keys, rooms, members, messages and the event outbox.

CREATE TABLE IF NOT EXISTS tenants (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    rate_limit_per_sec INTEGER NOT NULL DEFAULT 100 CHECK (rate_limit_per_sec > 0),
    settings           JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- API keys are stored as SHA-256 hex; the key itself is shown once at creation.
CREATE TABLE IF NOT EXISTS api_keys (
    key_hash       TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    display_prefix TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at     TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys (tenant_id);

CREATE TABLE IF NOT EXISTS admin_keys (
    key_hash   TEXT PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS rooms (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    room_type  TEXT NOT NULL CHECK (room_type IN ('dm', 'group', 'channel')),
    name       TEXT,
    unique_key TEXT,
    last_seq   BIGINT NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- At most one DM per pair of users in a tenant.
CREATE UNIQUE INDEX IF NOT EXISTS rooms_unique_key ON rooms (tenant_id, unique_key) WHERE unique_key IS NOT NULL;

CREATE TABLE IF NOT EXISTS room_members (
    room_id   TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id   TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    role      TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    joined_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX IF NOT EXISTS room_members_user ON room_members (tenant_id, user_id);

-- Per-room order: seq is taken from rooms.last_seq inside the storing transaction.
CREATE TABLE IF NOT EXISTS messages (
    room_id       TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq           BIGINT NOT NULL,
    id            TEXT NOT NULL UNIQUE,
    sender_id     TEXT NOT NULL,
    content       TEXT NOT NULL,
    meta          JSONB,
    client_msg_id TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_idempotency
    ON messages (room_id, sender_id, client_msg_id) WHERE client_msg_id IS NOT NULL;

-- Events written with their change and published after commit; rows left here are
-- republished by the relay (JetStream dedupes on event_id).
CREATE TABLE IF NOT EXISTS outbox (
    id         BIGSERIAL PRIMARY KEY,
    bus_prefix TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    subject    TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (bus_prefix, id);

-- One row that health checks write to prove the database takes writes.
CREATE TABLE IF NOT EXISTS health_probe (
    id         INTEGER PRIMARY KEY,
    touched_at TIMESTAMPTZ NOT NULL
);
