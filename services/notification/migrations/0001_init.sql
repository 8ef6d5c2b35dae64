-- notification keeps its data in a schema of its own, beside message-store's tables.
CREATE SCHEMA IF NOT EXISTS notification;

CREATE TABLE IF NOT EXISTS notification.health_probe (
    id         INTEGER PRIMARY KEY,
    touched_at TIMESTAMPTZ NOT NULL
);
