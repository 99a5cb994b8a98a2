-- The portal's schema. One set of migrations for SQLite and PostgreSQL, both
-- reached through sqlx's Any driver, so only portable SQL and column types:
-- BIGINT and TEXT. Flags are BIGINT 0/1 (the Any driver cannot read an
-- SQLite BOOLEAN column). Public keys are lowercase hex; profiles, brandings
-- and sealed secrets are JSON text (see portal/src/store.rs).
--
-- Never edit a migration once released: sqlx checks each one's checksum.
-- Change the schema with a new file, 0002_….sql.

-- Portal root keys (Ed25519). key_id is the key's fingerprint in hex;
-- sealed is the seed sealed under the admin passphrase (portal/src/secret.rs).
CREATE TABLE root_keys (
    key_id     TEXT   NOT NULL PRIMARY KEY,
    public_key TEXT   NOT NULL,
    sealed     TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    active     BIGINT NOT NULL DEFAULT 0 CHECK (active IN (0, 1))
);

-- At most one active root key.
CREATE UNIQUE INDEX root_keys_one_active ON root_keys (active) WHERE active = 1;

-- The relay list baked into builds (R18).
CREATE TABLE relays (
    name           TEXT   NOT NULL PRIMARY KEY,
    host           TEXT   NOT NULL,
    quic_port      BIGINT NOT NULL CHECK (quic_port BETWEEN 0 AND 65535),
    tls_port       BIGINT NOT NULL CHECK (tls_port BETWEEN 0 AND 65535),
    websocket_port BIGINT NOT NULL CHECK (websocket_port BETWEEN 0 AND 65535),
    public_key     TEXT   NOT NULL,
    region         TEXT   NOT NULL,
    priority       BIGINT NOT NULL CHECK (priority BETWEEN 0 AND 255)
);

-- Policy profiles (R16), as JSON; name is the profile's own name.
CREATE TABLE profiles (
    name TEXT NOT NULL PRIMARY KEY,
    body TEXT NOT NULL
);

-- Brandings, as JSON, by name.
CREATE TABLE brands (
    name TEXT NOT NULL PRIMARY KEY,
    body TEXT NOT NULL
);

-- Issued licenses (R8). master_seed is IK_M's seed, sealed; signed_by is the
-- key_id of the root key that signed the license. Licenses are never deleted.
CREATE TABLE licenses (
    number        BIGINT NOT NULL PRIMARY KEY CHECK (number BETWEEN 1000000000 AND 9999999999),
    licensee      TEXT   NOT NULL,
    profile       TEXT   NOT NULL,
    master_public TEXT   NOT NULL,
    master_seed   TEXT   NOT NULL,
    issued_at     BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    revoked_at    BIGINT,
    signed_by     TEXT   NOT NULL
);

-- The revocation list's serial: one row, incremented with UPDATE … RETURNING.
CREATE TABLE revocation_serial (
    id    BIGINT NOT NULL PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO revocation_serial (id, value) VALUES (1, 0);
