-- Who may sync what: one row per OAuth grant a user linked, its encrypted secrets, and the
-- brokerage accounts the grant reaches. Every synced table hangs off tastytrade_accounts and is
-- scoped by it, so a query that starts from (user_id, account id) cannot reach another user's
-- rows. created_at/updated_at are kept by the database, not by the code.

CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TABLE tastytrade_credentials (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- The JWT subject of the owner, as the API Gateway authorizer passes it.
    user_id      text NOT NULL CHECK (user_id <> ''),
    environment  text NOT NULL CHECK (environment IN ('production', 'sandbox')),
    -- authorization_code: the deployment's OAuth client; personal: the user's own client.
    grant_kind   text NOT NULL CHECK (grant_kind IN ('authorization_code', 'personal')),
    status       text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'NEEDS_REAUTH')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tastytrade_credentials_user ON tastytrade_credentials (user_id);
CREATE TRIGGER tastytrade_credentials_updated_at BEFORE UPDATE ON tastytrade_credentials
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Envelope-encrypted secrets of a grant, one row per purpose. Only ciphertext is stored: the
-- data key is wrapped by KMS under an encryption context naming purpose, user and credential,
-- so a row copied to another credential or purpose cannot be decrypted. Deleting the grant
-- deletes its secrets.
CREATE TABLE tastytrade_credential_secrets (
    credential_id   uuid NOT NULL REFERENCES tastytrade_credentials (id) ON DELETE CASCADE,
    purpose         text NOT NULL CHECK (purpose IN ('refresh_token', 'client_secret', 'access_token')),
    scheme_version  smallint NOT NULL,
    kms_key_id      text NOT NULL,
    wrapped_key     bytea NOT NULL,
    nonce           bytea NOT NULL CHECK (octet_length(nonce) = 12),
    ciphertext      bytea NOT NULL,
    -- Set for the cached access token only: it is useless, and is replaced, after this instant.
    expires_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (credential_id, purpose)
);
CREATE TRIGGER tastytrade_credential_secrets_updated_at BEFORE UPDATE ON tastytrade_credential_secrets
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE tastytrade_accounts (
    id                        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id                   text NOT NULL CHECK (user_id <> ''),
    -- NULL once unlinked with the synced data kept; a re-link sets it again and keeps the id.
    credential_id             uuid REFERENCES tastytrade_credentials (id) ON DELETE SET NULL,
    environment               text NOT NULL CHECK (environment IN ('production', 'sandbox')),
    account_number            text NOT NULL CHECK (account_number <> ''),
    nickname                  text,
    account_type_name         text,
    margin_or_cash            text,
    is_closed                 boolean NOT NULL DEFAULT false,
    opened_at                 timestamptz,
    closed_at                 timestamptz,
    last_sync_status          text NOT NULL DEFAULT 'PENDING'
        CHECK (last_sync_status IN ('PENDING', 'RUNNING', 'SUCCESS', 'FAILED', 'NEEDS_REAUTH')),
    last_sync_at              timestamptz,
    last_successful_sync_at   timestamptz,
    last_error                text,
    -- How far each entity is known to be synced; incremental syncs re-read a trailing window
    -- before these, because the broker changes rows after the fact.
    transactions_synced_to    timestamptz,
    orders_synced_to          timestamptz,
    balance_snapshots_synced_to date,
    unlinked_at               timestamptz,
    raw                       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, environment, account_number)
);
CREATE INDEX tastytrade_accounts_credential ON tastytrade_accounts (credential_id);
-- The scheduler walks the syncable accounts in id order (keyset pagination).
CREATE INDEX tastytrade_accounts_syncable ON tastytrade_accounts (id)
    WHERE credential_id IS NOT NULL AND NOT is_closed AND last_sync_status <> 'NEEDS_REAUTH';
CREATE TRIGGER tastytrade_accounts_updated_at BEFORE UPDATE ON tastytrade_accounts
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
