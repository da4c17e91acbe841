-- Version 11: values travel exactly. A change captured per row carries its
-- columns' text forms (functions/capture_row.sql takes json, not jsonb);
-- the capture triggers are made again after the install (after_change.sql)
-- to call it so.
drop function if exists pgferry.capture_row(int, text, text[], text[], boolean, jsonb, jsonb, int[], int[]);
