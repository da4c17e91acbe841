-- Version 7: named targets.
--
-- The target agent a source streams to, recorded by `add-target` so that
-- `run` needs no address of its own. Its credentials stay in files the agent
-- reads when it connects: only their paths are stored, never a secret.
create table pgferry.targets (
    target_id       int generated always as identity primary key,
    name            text not null unique,
    -- http://HOST:PORT or https://HOST:PORT
    address         text not null,
    tls_ca          text,
    tls_cert        text,
    tls_key         text,
    auth_token_file text,
    added_at        timestamptz not null default now()
);
