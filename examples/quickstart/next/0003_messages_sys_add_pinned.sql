ALTER TABLE messages_sys_message ADD COLUMN is_pinned boolean NOT NULL DEFAULT false;
CREATE INDEX message_pinned_idx ON messages_sys_message (is_pinned);
