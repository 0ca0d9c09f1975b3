-- The tenant's users.
CREATE TABLE users (
    id           INTEGER PRIMARY KEY,
    username     TEXT NOT NULL UNIQUE CHECK (length(username) <= 150),
    display_name TEXT NOT NULL CHECK (length(display_name) <= 200),
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
