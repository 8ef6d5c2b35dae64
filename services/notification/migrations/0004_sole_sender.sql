-- The one user who sent every message of an open window, when one did: a window whose
-- only member who could have missed something wrote it all needs no look at its
-- messages (a bot posting over REST, a user alone in a room). NULL when several users
-- sent, or not known (windows opened before this column).
ALTER TABLE notification.offline_windows ADD COLUMN IF NOT EXISTS sole_sender TEXT;
