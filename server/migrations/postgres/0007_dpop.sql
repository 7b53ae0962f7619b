-- DPoP (#29, dpop.rs): the key a session is bound to (its JWK thumbprint; NULL for a bearer
-- session), and the proofs seen, each refused a second time until it expires.
ALTER TABLE sessions ADD COLUMN jkt TEXT;
CREATE TABLE dpop_proofs (
  replay_key TEXT PRIMARY KEY,
  expires_at BIGINT NOT NULL
);
