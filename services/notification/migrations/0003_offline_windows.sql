-- The offline pass follows message-store's log (the `message_feed` command) instead of a
-- stream of events, and coalesces what members missed per room and window.

-- Where the pass has read the log up to, per deployment (bus prefix): the feed's `next`.
-- Moved in the same transaction as the windows the page it ends added to.
CREATE TABLE IF NOT EXISTS notification.offline_cursor (
    follower   TEXT PRIMARY KEY,
    after_tx   BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Windows with messages that are not closed yet: one row per room and window (never per
-- member or per message), holding the window's first and last seq. Closing a window
-- (after its end plus the grace period) writes the inbox entries and webhook deliveries
-- of the members who missed something and deletes the row, in one transaction.
CREATE TABLE IF NOT EXISTS notification.offline_windows (
    follower     TEXT NOT NULL,
    tenant_id    TEXT NOT NULL,
    room_id      TEXT NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    window_end   TIMESTAMPTZ NOT NULL,
    first_seq    BIGINT NOT NULL,
    last_seq     BIGINT NOT NULL,
    PRIMARY KEY (follower, tenant_id, room_id, window_start)
);
CREATE INDEX IF NOT EXISTS offline_windows_due ON notification.offline_windows (follower, window_end);

-- Whether a delivery's job reached the work queue. Offline deliveries are recorded in the
-- closing transaction and queued after it commits; one whose job was not confirmed (the
-- process died in between) is queued again by the offline pass. Rows written before this
-- column existed, and deliveries of /notify, were queued when recorded.
ALTER TABLE notification.deliveries ADD COLUMN IF NOT EXISTS queued BOOLEAN NOT NULL DEFAULT true;
CREATE INDEX IF NOT EXISTS deliveries_unqueued ON notification.deliveries (created_at) WHERE NOT queued;
