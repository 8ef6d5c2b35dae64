-- Blocks (issue 24, stage 3, `PUT|DELETE /blocks/{user_id}`, `GET /blocks`): blocker_id
-- blocks blocked_id within a tenant. The send statement probes (tenant_id, blocked_id)
-- for a DM's other member; listing reads the primary key.
CREATE TABLE IF NOT EXISTS user_blocks (
    tenant_id TEXT NOT NULL,
    blocker_id TEXT NOT NULL,
    blocked_id TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, blocker_id, blocked_id)
);
CREATE INDEX IF NOT EXISTS user_blocks_blocked ON user_blocks (tenant_id, blocked_id, blocker_id);
