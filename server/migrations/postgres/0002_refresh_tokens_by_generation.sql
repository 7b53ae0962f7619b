-- Rotations of a long-lived session no longer slow down (#16; BENCHMARKS.md, rotating
-- refreshes after 1,500 rotations: 730 against 1,350 req/s on fresh sessions before this).
--
-- A rotation marks the current token superseded and the presented one used. While
-- superseded_at was indexed, each of those updates wrote new index entries. Indexed by
-- (session_id, generation), columns a token never changes, they touch no index and stay on
-- their page (heap-only tuples), for which the fillfactor leaves room. Every search of a
-- session's tokens is by generation: the current one (at or after the presented one's), one
-- generation (answer_was_lost), and the pruning (before the presented one's).
--
-- The pruning deletes a prefix of the chain (superseded_at grows with the generation), and
-- PostgreSQL keeps deleted rows, and their index entries, until a vacuum. Without a lower bound
-- each rotation would visit again every row its session ever pruned. prune_from is the newest
-- generation pruned (a retried rotation can leave two tokens of one generation): every token of
-- an earlier generation is gone, so the next pruning starts there.
DROP INDEX refresh_tokens_superseded;
CREATE INDEX refresh_tokens_session_generation ON refresh_tokens(session_id, generation);
ALTER TABLE refresh_tokens SET (fillfactor = 70);
ALTER TABLE sessions ADD COLUMN prune_from BIGINT NOT NULL DEFAULT 0;
