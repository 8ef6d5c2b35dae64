-- The sender's display name at the time of sending (from the WebSocket user_name or
-- the REST body's sender_name), so every client shows the same name.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS sender_name TEXT;
