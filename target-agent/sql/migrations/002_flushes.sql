-- Version 2: the applier commits batches asynchronously. A flushing session
-- writes its source's row here with a synchronous commit, which puts every
-- earlier commit on disk too (a transaction that wrote nothing would commit
-- without waiting for the disk). Then those batches are reported durable.
create table pgferry.flushes (
    source_id  text primary key,
    flushed_at timestamptz not null
);
