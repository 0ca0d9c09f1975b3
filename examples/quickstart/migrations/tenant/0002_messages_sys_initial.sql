CREATE TABLE messages_sys_userstatus (
    id        bigserial PRIMARY KEY,
    user_id   integer NOT NULL UNIQUE REFERENCES auth_user (id) DEFERRABLE INITIALLY DEFERRED,
    is_online boolean NOT NULL DEFAULT false,
    last_seen timestamptz
);
CREATE INDEX userstatus_online_idx ON messages_sys_userstatus (is_online);
CREATE TABLE messages_sys_message (
    id        bigserial PRIMARY KEY,
    sender_id integer NOT NULL REFERENCES auth_user (id) DEFERRABLE INITIALLY DEFERRED,
    body      text NOT NULL,
    sent_at   timestamptz NOT NULL DEFAULT now()
);
