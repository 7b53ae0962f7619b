-- One-time sign-in codes (#23, email_otp.rs): one live code per address, as its MAC, with its
-- expiry and the wrong attempts it has left. A login locks the row (FOR UPDATE) and spends an
-- attempt or consumes the code in the transaction that writes its session. (The queued mails of
-- an address's older codes, erased when a new one is sent, are found by outbox_app.)
CREATE TABLE email_otp_codes (
    app_id TEXT NOT NULL,
    email TEXT NOT NULL,
    code_mac TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    attempts_left BIGINT NOT NULL,
    PRIMARY KEY (app_id, email)
);
