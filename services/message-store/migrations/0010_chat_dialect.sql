-- What the rest-chat.md dialect (/api/chat) needs, on the same rooms and messages as
-- every other dialect.
--
-- Messages: a kind (`text`, or `system` for notices the tenant's server or an admin
-- posts), the message replied to (in the same room; checked by the send statement),
-- and attachments (object-store keys with their name, type and size; NULL when there
-- are none, so a plain message costs nothing more). Adding columns with a constant
-- default or none rewrites nothing.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS kind TEXT NOT NULL DEFAULT 'text';
ALTER TABLE messages ADD COLUMN IF NOT EXISTS reply_to TEXT;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS attachments JSONB;

-- Rooms bound to something outside the chat: a support chat (context_type 'support',
-- no id) or a context chat (a purchase request, an order, ...: type and id), at most
-- one per context and tenant, so concurrent creates converge on one room. metadata is
-- the chat's free-form JSON object.
ALTER TABLE rooms ADD COLUMN IF NOT EXISTS context_type TEXT;
ALTER TABLE rooms ADD COLUMN IF NOT EXISTS context_id TEXT;
ALTER TABLE rooms ADD COLUMN IF NOT EXISTS metadata JSONB;
CREATE UNIQUE INDEX IF NOT EXISTS rooms_context
    ON rooms (tenant_id, context_type, context_id) WHERE context_id IS NOT NULL;

-- A member's archive flag: when they archived the room. The room counts as archived
-- for them while no message is newer than this (a new message brings it back without
-- a write per member on the send path).
ALTER TABLE room_members ADD COLUMN IF NOT EXISTS archived_at TIMESTAMPTZ;

-- The tenant's user directory: display data and roles (`support` and `admin` make the
-- support pool). A user also exists without a row here once they are a member of a
-- room of the tenant.
CREATE TABLE IF NOT EXISTS users (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id         TEXT NOT NULL,
    name       TEXT,
    avatar_url TEXT,
    roles      TEXT[] NOT NULL DEFAULT '{}',
    metadata   JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
-- The support pool of a tenant, without reading its other users.
CREATE INDEX IF NOT EXISTS users_support_pool
    ON users (tenant_id, id) WHERE roles && ARRAY['support', 'admin']::text[];
