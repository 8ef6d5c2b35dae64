-- Notifications, per-user inboxes, topic subscriptions and webhook deliveries.

CREATE TABLE IF NOT EXISTS notification.notifications (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    topic      TEXT NOT NULL,
    payload    JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per recipient; delivered_at is set once a socket of theirs got it.
CREATE TABLE IF NOT EXISTS notification.inbox (
    tenant_id    TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    item_id      TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('notification', 'message')),
    body         JSONB NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, user_id, item_id)
);
CREATE INDEX IF NOT EXISTS inbox_pending ON notification.inbox (tenant_id, user_id, created_at) WHERE delivered_at IS NULL;

CREATE TABLE IF NOT EXISTS notification.subscriptions (
    tenant_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    topic      TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id, topic)
);
CREATE INDEX IF NOT EXISTS subscriptions_topic ON notification.subscriptions (tenant_id, topic);

-- Webhook deliveries and their retries; status 'dead' rows are the dead letters.
CREATE TABLE IF NOT EXISTS notification.deliveries (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('notification', 'message')),
    ref_id          TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    room_id         TEXT,
    topic           TEXT,
    body            JSONB NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_attempt_at TIMESTAMPTZ,
    last_error      TEXT,
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, kind, ref_id, user_id)
);
CREATE INDEX IF NOT EXISTS deliveries_dead ON notification.deliveries (tenant_id, last_attempt_at DESC) WHERE status = 'dead';
