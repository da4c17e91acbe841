-- After an install that changed a migration or a function: every
-- registered table's capture triggers are made again by the live attach,
-- so they call the functions and take the arguments this version expects.
select pgferry.attach(table_id) from pgferry.tables where not removed;
