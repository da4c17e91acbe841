-- Version 3.
--
-- An UPDATE of a table replicated whole is captured once per statement,
-- from its transition table: one insert of all its new rows instead of a
-- function call per row (the bench's bulk UPDATE measures it). An update
-- that changes the key keeps its row trigger, which queues the delete of
-- the old key (with the new row); the statement's upsert of every new row
-- comes after it, so even keys that trade places end right.

drop function if exists pgferry.capture_update() cascade;
