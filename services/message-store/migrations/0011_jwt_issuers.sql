-- External JWT issuers a tenant registered (tenants.settings -> 'jwt' -> 'issuers'),
-- by their `iss`: a token that does not name its tenant (no `tid` claim) finds it
-- here. The primary key makes an issuer belong to one tenant only; message-store
-- rewrites a tenant's rows in the transaction that writes its settings.
CREATE TABLE IF NOT EXISTS tenant_jwt_issuers (
    issuer    TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS tenant_jwt_issuers_tenant ON tenant_jwt_issuers (tenant_id);
