-- Version 16: a table's sequences go with it. A sequence a registered
-- table's column takes its default from (serial, identity, nextval) is
-- registered for that table's target as the table's (`table_id`), and
-- leaves with the registration.
alter table pgferry.sequences
    add column table_id int references pgferry.tables on delete cascade;
