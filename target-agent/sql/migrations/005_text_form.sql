-- Version 5: columns whose JSON form does not read back exactly travel in
-- their text form; the target reads them through their type's input
-- function, deciding which they are by pgferry.text_form (installed with
-- the functions, the same body as the source's). No table changes: the
-- version tells an agent that needs the function to ask for `install`.
select 1;
