-- Users see their own sessions (#25): what a session logged in with, the device document its
-- login sent (a bounded JSON subset, routes/auth.rs), and the client address it was first seen
-- from. NULL for sessions from before: listed without them.
ALTER TABLE sessions ADD COLUMN provider_type TEXT;
ALTER TABLE sessions ADD COLUMN device TEXT;
ALTER TABLE sessions ADD COLUMN ip TEXT;
