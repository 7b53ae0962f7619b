-- The outbox becomes the mail queue (#23; mail.rs): a mail is queued in the transaction that
-- makes its token and sent by the delivery worker of one instance, which claims it with
-- FOR UPDATE SKIP LOCKED and a lease (next_at), so that each mail is sent once however many
-- instances run. Mails of the development outbox made before were never meant to be sent:
-- failed, with that reason (an operator can retry them).
ALTER TABLE outbox ADD COLUMN status TEXT NOT NULL DEFAULT 'pending';
ALTER TABLE outbox ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN next_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN expires_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN error TEXT;
ALTER TABLE outbox ADD COLUMN sent_at BIGINT;
UPDATE outbox SET status = 'failed',
  error = 'queued before this server could send mail (development outbox)';
CREATE INDEX outbox_due ON outbox(next_at) WHERE status = 'pending';
