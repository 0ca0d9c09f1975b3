-- Shared (shared.db): the languages the demo app is translated into.
CREATE TABLE IF NOT EXISTS demo_languages (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL
);
INSERT INTO demo_languages (code, name) VALUES ('en', 'English'), ('fr', 'Français')
ON CONFLICT (code) DO NOTHING;
