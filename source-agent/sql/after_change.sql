-- After an install that changed a migration or a function: every
-- capture's triggers are made again by the live attach, so they call the
-- functions and take the arguments this version expects.
select pgferry.attach(capture_id)
from (select distinct capture_id from pgferry.tables where not removed) c;
