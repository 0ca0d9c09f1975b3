-- Shared (public schema): the plans every tenant subscribes to.
CREATE TABLE IF NOT EXISTS public.plans (
    id    integer PRIMARY KEY,
    name  text NOT NULL UNIQUE
);
INSERT INTO public.plans (id, name) VALUES (1, 'starter'), (2, 'business') ON CONFLICT DO NOTHING;
