-- Whether a column of type p_type travels in its text form (the type's
-- output function, as COPY writes it) instead of as row_to_json renders
-- it. row_to_json's form reads back as the same value for scalars, but not
-- for json and jsonb (JSON null looks like SQL NULL, json text is
-- re-parsed), arrays (their bounds go), composites, and types with a cast
-- to json (hstore becomes an object its input cannot read); domains over
-- any of those likewise. Both sides install this one body: the source
-- captures such columns as text, the target reads them back through the
-- type's input function. A type wrongly counted here would only cost
-- speed: the text form is exact for every type.
create or replace function pgferry.text_form(p_type oid) returns boolean
language sql stable parallel safe set search_path = pg_catalog, pg_temp as $$
    with recursive levels(oid) as (
        select p_type
        union all
        select t.typbasetype from pg_type t join levels l on t.oid = l.oid
        where t.typtype = 'd'
    )
    select exists (
        select from levels l join pg_type t on t.oid = l.oid
        where t.typtype = 'c' or t.typcategory = 'A'
           or t.oid in ('json'::regtype, 'jsonb'::regtype)
           or exists (select from pg_cast c
                      where c.castsource = t.oid and c.casttarget in ('json'::regtype, 'jsonb'::regtype)))
$$;
