-- Targets are cut together (functions/cut_batches.sql) and their
-- acknowledgements that come together share a transaction
-- (functions/acknowledge.sql): the one-target forms go.
drop function if exists pgferry.cut_batch(int, bigint, bigint);
drop function if exists pgferry.acknowledge(int, bigint, boolean);
