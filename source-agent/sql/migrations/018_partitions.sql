-- Version 18: the partitions, at every depth, of each replicated
-- partitioned table, as capture last saw them. After a DDL the tree is
-- compared with this list (follow_partitions.sql) to tell a partition
-- created or attached (its rows enter the stream) from one detached (its
-- rows leave) or dropped.
create table pgferry.partitions (
    relid oid not null,
    capture_id int not null,
    primary key (capture_id, relid)
);
