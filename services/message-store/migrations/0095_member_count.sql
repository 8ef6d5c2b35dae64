-- A room's member count kept on its row (issue 21, big rooms): every socket's connect
-- reads the room (`get_room`, for `total_participants`), and counting room_members there
-- made N members connecting to a room cost O(N²) (0.9 ms per read at 5,000 members).
-- Kept by statement-level triggers on room_members, one UPDATE per room per statement
-- (a bulk add of 1,000 members is one update of the room row). A row copied by a tenant
-- move arrives with its count and its members after it; the move sets the count again
-- from the members it copied (moves.rs).
ALTER TABLE rooms ADD COLUMN IF NOT EXISTS member_count BIGINT NOT NULL DEFAULT 0;

CREATE OR REPLACE FUNCTION chat_members_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE rooms r SET member_count = r.member_count + a.n
    FROM (SELECT room_id, count(*) AS n FROM added GROUP BY room_id) a
    WHERE r.id = a.room_id;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION chat_members_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE rooms r SET member_count = GREATEST(r.member_count - d.n, 0)
    FROM (SELECT room_id, count(*) AS n FROM removed GROUP BY room_id) d
    WHERE r.id = d.room_id;
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS room_members_added ON room_members;
CREATE TRIGGER room_members_added AFTER INSERT ON room_members
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION chat_members_added();
DROP TRIGGER IF EXISTS room_members_removed ON room_members;
CREATE TRIGGER room_members_removed AFTER DELETE ON room_members
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION chat_members_removed();

-- After the triggers (the file is one transaction, and ALTER TABLE holds off new members
-- until it commits), the counts of the rooms that exist.
UPDATE rooms r SET member_count = c.n
FROM (SELECT room_id, count(*) AS n FROM room_members GROUP BY room_id) c
WHERE r.id = c.room_id AND r.member_count <> c.n;
