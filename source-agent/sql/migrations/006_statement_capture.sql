-- Version 6: statement captures without a search_path.
--
-- INSERT and UPDATE statements of a table replicated whole are captured by
-- capture_rows, DELETE statements of a table without a row filter by
-- capture_deletes: both schema-qualified throughout instead of running
-- with a search_path of their own, whose save and restore cost every
-- single-row INSERT and DELETE. capture_updates becomes capture_rows; its
-- triggers go with it and the install that runs this re-makes every
-- table's triggers (after_change.sql).

drop function if exists pgferry.capture_updates() cascade;
