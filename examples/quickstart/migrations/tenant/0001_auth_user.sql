CREATE TABLE auth_user (
    id          serial PRIMARY KEY,
    username    varchar(150) NOT NULL UNIQUE,
    email       varchar(254) NOT NULL,
    date_joined timestamptz NOT NULL DEFAULT now()
);
