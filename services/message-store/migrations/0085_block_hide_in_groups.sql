-- Blocks in group rooms (issue 24): with hide_in_groups the blocker's history leaves out
-- the blocked user's messages (a lookup on the primary key's (tenant_id, blocker_id)
-- prefix, once per history query) and gateways drop them from the blocker's sockets.
ALTER TABLE user_blocks ADD COLUMN IF NOT EXISTS hide_in_groups BOOLEAN NOT NULL DEFAULT false;
