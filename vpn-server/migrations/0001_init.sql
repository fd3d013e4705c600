-- GroupVPN group server schema, version 1.
--
-- Portable SQL: the same text runs on SQLite and PostgreSQL. Integers are
-- BIGINT (64-bit on both), times are Unix seconds, binary values are stored
-- as text (hex or base64). Row ids are random positive 53-bit integers
-- chosen by the server (neither database's auto-increment syntax is
-- portable, and random ids in URLs reveal nothing about other rows).

CREATE TABLE users (
    id            BIGINT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,          -- Argon2id PHC string
    created_at    BIGINT NOT NULL
);

CREATE TABLE sessions (
    id_hash     TEXT PRIMARY KEY,         -- SHA-256 hex of the cookie value
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf        TEXT NOT NULL,            -- per-session CSRF token
    flash       TEXT,                     -- one message for the next page
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at);

CREATE TABLE vpn_groups (
    id              BIGINT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    range4          TEXT NOT NULL,        -- e.g. 10.77.0.0/24
    validity_days   BIGINT NOT NULL,      -- member certificate validity
    bootstrap       TEXT NOT NULL,        -- multiaddrs, one per line
    ca_cert_pem     TEXT NOT NULL,
    ca_key_enc      TEXT NOT NULL,        -- base64(nonce || ChaCha20-Poly1305(PKCS#8 DER))
    crl_number      BIGINT NOT NULL,      -- number of the current CRL
    crl_pem         TEXT NOT NULL,
    crl_this_update BIGINT NOT NULL,
    crl_next_update BIGINT NOT NULL,
    created_by      BIGINT NOT NULL REFERENCES users (id),
    created_at      BIGINT NOT NULL
);

-- A user's role in a group: 'admin' or 'member'. No row = nobody.
CREATE TABLE memberships (
    group_id   BIGINT NOT NULL REFERENCES vpn_groups (id) ON DELETE CASCADE,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);

CREATE TABLE join_requests (
    id          BIGINT PRIMARY KEY,
    group_id    BIGINT NOT NULL REFERENCES vpn_groups (id) ON DELETE CASCADE,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    node_name   TEXT NOT NULL,
    reason      TEXT NOT NULL,
    status      TEXT NOT NULL,            -- 'pending', 'approved', 'denied'
    created_at  BIGINT NOT NULL,
    decided_at  BIGINT,
    decided_by  BIGINT REFERENCES users (id)
);
CREATE INDEX join_requests_group ON join_requests (group_id, status);

-- A node of the group: created when a request is approved (or by the admin
-- CLI). The blob secret is stored only as its SHA-256; it is consumed by
-- the first successful enrolment, which also records the PeerId and the
-- fixed address allocated from the group range.
CREATE TABLE members (
    id             BIGINT PRIMARY KEY,
    group_id       BIGINT NOT NULL REFERENCES vpn_groups (id) ON DELETE CASCADE,
    user_id        BIGINT REFERENCES users (id) ON DELETE SET NULL,
    node_name      TEXT NOT NULL,
    status         TEXT NOT NULL,         -- 'approved', 'enrolled', 'revoked'
    secret_hash    TEXT UNIQUE,
    secret_used_at BIGINT,
    peer_id        TEXT,
    address        TEXT,
    created_at     BIGINT NOT NULL,
    enrolled_at    BIGINT,
    revoked_at     BIGINT,
    UNIQUE (group_id, node_name),
    UNIQUE (group_id, peer_id),
    UNIQUE (group_id, address)
);
CREATE INDEX members_peer ON members (peer_id);

CREATE TABLE certificates (
    serial      TEXT PRIMARY KEY,         -- lower-case hex
    group_id    BIGINT NOT NULL REFERENCES vpn_groups (id) ON DELETE CASCADE,
    member_id   BIGINT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    cert_pem    TEXT NOT NULL,
    not_before  BIGINT NOT NULL,
    not_after   BIGINT NOT NULL,
    issued_at   BIGINT NOT NULL,
    revoked_at  BIGINT,
    reason      TEXT
);
CREATE INDEX certificates_member ON certificates (member_id);
CREATE INDEX certificates_revoked ON certificates (group_id, revoked_at);

CREATE TABLE audit_log (
    id        BIGINT PRIMARY KEY,
    group_id  BIGINT REFERENCES vpn_groups (id) ON DELETE CASCADE,
    at        BIGINT NOT NULL,            -- Unix microseconds (orders the log)
    actor     TEXT NOT NULL,              -- username, 'api' or 'admin-cli'
    action    TEXT NOT NULL,              -- e.g. 'approve', 'enroll', 'revoke'
    detail    TEXT NOT NULL
);
CREATE INDEX audit_log_group ON audit_log (group_id, at);
