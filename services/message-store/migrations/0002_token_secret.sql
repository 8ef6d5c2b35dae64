-- A per-tenant secret that signs short-lived user tokens (HS256). Rotating a
-- tenant's API key rotates it too, which invalidates outstanding tokens.
ALTER TABLE tenants
    ADD COLUMN IF NOT EXISTS token_secret TEXT NOT NULL
    DEFAULT replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
