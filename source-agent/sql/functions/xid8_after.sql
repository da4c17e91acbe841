-- The transaction id after x.
create or replace function pgferry.xid8_after(x xid8) returns xid8
language sql immutable strict parallel safe
return (x::text::numeric + 1)::text::xid8;
