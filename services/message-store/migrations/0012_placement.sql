-- Tenants on several PostgreSQL clusters. Every cluster gets this whole schema; the
-- home cluster (message-store's DATABASE_URL, named `main`) is also the directory:
-- tenants, keys, settings and where each tenant's data lives.
--
-- tenants.cluster: the cluster holding the tenant's rooms, members, messages, cursors
-- and users. tenants.moving_to: set while an operator moves the tenant; its commands
-- are refused (retryably) until the move is done.
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS cluster TEXT NOT NULL DEFAULT 'main';
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS moving_to TEXT;
CREATE INDEX IF NOT EXISTS tenants_cluster ON tenants (cluster);

-- One row per tenant whose data is on this cluster. Rooms and users reference it
-- rather than `tenants` (which only the home cluster fills), and a move deletes it
-- from the old cluster in the same transaction that takes the tenant's rows away:
-- from then on, a message-store replica still routing the tenant there cannot create
-- anything for it (the reference fails), so nothing can be written where nobody will
-- look for it.
CREATE TABLE IF NOT EXISTS tenant_residency (
    tenant_id TEXT PRIMARY KEY,
    since     TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO tenant_residency (tenant_id) SELECT id FROM tenants ON CONFLICT DO NOTHING;

ALTER TABLE rooms DROP CONSTRAINT IF EXISTS rooms_tenant_id_fkey;
ALTER TABLE rooms DROP CONSTRAINT IF EXISTS rooms_tenant_residency_fkey;
ALTER TABLE rooms ADD CONSTRAINT rooms_tenant_residency_fkey
    FOREIGN KEY (tenant_id) REFERENCES tenant_residency (tenant_id);
ALTER TABLE users DROP CONSTRAINT IF EXISTS users_tenant_id_fkey;
ALTER TABLE users DROP CONSTRAINT IF EXISTS users_tenant_residency_fkey;
ALTER TABLE users ADD CONSTRAINT users_tenant_residency_fkey
    FOREIGN KEY (tenant_id) REFERENCES tenant_residency (tenant_id);
