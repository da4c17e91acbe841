-- Targets are cut together (functions/cut_batches.sql): the one-target cut
-- goes.
drop function if exists pgferry.cut_batch(int, bigint, bigint);
