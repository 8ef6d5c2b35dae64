-- Threads and mentions (issue 23).
--
-- A thread reply is a room message with parent_id set (a top-level message of the same
-- room; threads do not nest). The parent keeps its thread's summary in its own row
-- (reply_count, last_reply_at, thread_participants), written by the send statement in
-- the transaction that stores the replies and by deletion/erasure of a reply, so every
-- read path (history, single get, search, sync, resume) shows it with no extra query.
-- Participants: the parent's author, then everyone who replied, in order of their
-- first reply. A parent whose summary changes gets changed_tx, so sync returns it.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS parent_id TEXT;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS reply_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS last_reply_at TIMESTAMPTZ;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS thread_participants TEXT[];
-- A thread page: replies of one parent in seq order.
CREATE INDEX IF NOT EXISTS messages_thread ON messages (parent_id, seq) WHERE parent_id IS NOT NULL;
-- A member's threads (GET /threads): parents with replies, per room.
CREATE INDEX IF NOT EXISTS messages_threads ON messages (room_id, last_reply_at) WHERE reply_count > 0;

-- Mentions: member ids, or '@channel' for everyone. unread_mentions counts the mentions
-- after a member's read cursor; this index keeps that to the room's mentioning messages.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS mentions TEXT[];
CREATE INDEX IF NOT EXISTS messages_mentions ON messages (room_id, seq) WHERE mentions IS NOT NULL;

-- Thread read cursors (GET /threads' unread_count): how far a participant has read a
-- thread, by room seq. Moved by reading a thread page (and by replying).
CREATE TABLE IF NOT EXISTS thread_reads (
    tenant_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    parent_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    read_seq BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (parent_id, user_id)
);
CREATE INDEX IF NOT EXISTS thread_reads_user ON thread_reads (tenant_id, user_id);
CREATE INDEX IF NOT EXISTS thread_reads_room ON thread_reads (room_id);
