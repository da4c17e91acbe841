-- Version 2: the update capture that queues each row's key and changed
-- columns (see pgferry_capture--2.sql).
\echo Use "ALTER EXTENSION pgferry_capture UPDATE" to load this file. \quit

create function compiled_capture_updates() returns trigger
language c security definer as 'MODULE_PATHNAME', 'compiled_capture_updates_wrapper';
