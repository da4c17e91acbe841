-- pgferry's compiled capture. `source-agent install` creates the extension
-- when the server has it, and attach() then uses these functions in place
-- of pgferry.capture_rows, pgferry.capture_updates and
-- pgferry.capture_deletes: same arguments, same queue rows. SECURITY DEFINER as those, so that writers need no privilege
-- on pgferry.queue; every name in their SQL is schema-qualified.
\echo Use "CREATE EXTENSION pgferry_capture" to load this file. \quit

create function compiled_capture_rows() returns trigger
language c security definer as 'MODULE_PATHNAME', 'compiled_capture_rows_wrapper';

create function compiled_capture_deletes() returns trigger
language c security definer as 'MODULE_PATHNAME', 'compiled_capture_deletes_wrapper';

create function compiled_capture_updates() returns trigger
language c security definer as 'MODULE_PATHNAME', 'compiled_capture_updates_wrapper';
