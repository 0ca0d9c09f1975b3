-- Shared (public schema): the languages the demo app is translated into.
CREATE TABLE IF NOT EXISTS public.demo_languages (
    code text PRIMARY KEY,
    name text NOT NULL
);
INSERT INTO public.demo_languages (code, name) VALUES ('en', 'English'), ('fr', 'Français')
ON CONFLICT (code) DO NOTHING;
