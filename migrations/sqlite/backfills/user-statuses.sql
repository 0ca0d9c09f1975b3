-- Creates the missing status row of every user (set-based, idempotent).
INSERT INTO user_statuses (user_id, is_online)
SELECT u.id, 0
  FROM users u
 WHERE NOT EXISTS (SELECT 1 FROM user_statuses s WHERE s.user_id = u.id);
