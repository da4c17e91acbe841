-- Version 17: the columns a registration's --where names, by number, as
-- the server resolved them when the filter was checked (null for a filter
-- registered before this version: a schema change then looks for the
-- column's name in the filter's text).
alter table pgferry.tables add column filter_columns int2[];
