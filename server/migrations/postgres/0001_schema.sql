-- Version 1 of the PostgreSQL schema: what SQLite reached in its version 7 (store/sqlite.rs).
-- Times are Unix seconds (BIGINT); documents are JSON text, as in SQLite, so both backends
-- return them byte for byte alike. `seq` columns keep insertion order (SQLite's rowid).
-- Never edit a migration that has shipped: add the next file.

CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_login_at BIGINT NOT NULL,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    anonymous BOOLEAN NOT NULL DEFAULT FALSE,
    custom_data TEXT,
    seq BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX users_app ON users(app_id, created_at, seq);
-- The sweeper deletes old anonymous users.
CREATE INDEX users_anonymous ON users(created_at) WHERE anonymous;

CREATE TABLE identities (
    app_id TEXT NOT NULL,
    provider_type TEXT NOT NULL,
    external_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    data TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (app_id, provider_type, external_id)
);
CREATE INDEX identities_user ON identities(user_id, created_at, seq);

CREATE TABLE userpass (
    app_id TEXT NOT NULL,
    email TEXT NOT NULL,
    identity_id TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    confirmed BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, email)
);

CREATE TABLE userpass_tokens (
    token_id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    email TEXT NOT NULL,
    kind TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX userpass_tokens_email ON userpass_tokens(app_id, email);
CREATE INDEX userpass_tokens_expiry ON userpass_tokens(expires_at);

CREATE TABLE outbox (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    email TEXT NOT NULL,
    token TEXT NOT NULL,
    token_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX outbox_app ON outbox(app_id, email);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    UNIQUE (user_id, name)
);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    device_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE,
    api_key_id TEXT
);
CREATE INDEX sessions_user ON sessions(user_id);
CREATE INDEX sessions_api_key ON sessions(api_key_id) WHERE api_key_id IS NOT NULL;
CREATE INDEX sessions_expiry ON sessions(expires_at);

-- A rotating session keeps every token it had (reuse of any of them is detected); by
-- (session, superseded_at) the current token and the newest superseded one are one search
-- each, however long the session has lived.
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    issued_at BIGINT NOT NULL,
    superseded_at BIGINT,
    used_at BIGINT,
    -- Its place in the session's chain: 0 for the login's, its parent's + 1 for a rotation's.
    generation BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX refresh_tokens_superseded ON refresh_tokens(session_id, superseded_at);

-- Asymmetric access-token signing keys (signing.rs).
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    alg TEXT NOT NULL,
    private_pem TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT,
    seq BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX signing_keys_app ON signing_keys(app_id);
