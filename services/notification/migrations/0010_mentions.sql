-- Mentions (issue 23): a mentioned member who is offline gets an inbox entry and a
-- webhook of kind 'mention' for that one message, at once (never folded into the
-- coalesced offline windows). Keyed 'mention:<message id>' per user, so the offline pass
-- replaying a page writes nothing twice.
ALTER TABLE notification.inbox DROP CONSTRAINT IF EXISTS inbox_kind_check;
ALTER TABLE notification.inbox ADD CONSTRAINT inbox_kind_check
    CHECK (kind IN ('notification', 'message', 'mention'));
ALTER TABLE notification.deliveries DROP CONSTRAINT IF EXISTS deliveries_kind_check;
ALTER TABLE notification.deliveries ADD CONSTRAINT deliveries_kind_check
    CHECK (kind IN ('notification', 'message', 'mention'));
