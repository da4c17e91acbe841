-- Version 15: the queue holds only the kinds of change the agents know
-- (pgferry_proto's ChangeKind::QUEUE_OPS lists the same letters, and a unit
-- test keeps the two equal): a capture that wrote another letter would
-- otherwise stop its target's stream at the read, far from the write.
alter table pgferry.queue
    add constraint queue_op_known check (op in ('I', 'U', 'D', 'T', 'S'));
