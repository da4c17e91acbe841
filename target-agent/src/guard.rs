//! The guard (docs/architecture.md, "Guard"): on every target table the agent applies
//! to, a statement-level trigger enabled ALWAYS refuses INSERT, UPDATE,
//! DELETE, TRUNCATE and COPY from every session not logged in as the applier
//! role; write privileges granted to other roles are revoked as a second wall.

use pgferry_runtime::sql::{ident, literal};
use tokio_postgres::Client;

use crate::error::{Error, Result};

/// The guard trigger's name on every replicated target table.
pub const TRIGGER: &str = "pgferry_guard";

/// The trigger a switchover fences a source's tables with (the source
/// schema's `fence.sql`); the guard replaces it once this database is the
/// tables' target.
const FENCE: &str = "pgferry_fence";

/// A target table the guard stands on.
#[derive(Debug, Clone, Copy)]
pub struct Guarded<'a> {
    /// Its schema, unquoted.
    pub schema: &'a str,
    /// Its name, unquoted.
    pub table: &'a str,
    /// schema.table, quoted for SQL.
    pub quoted: &'a str,
    /// schema.table, for logs.
    pub name: &'a str,
}

/// Makes sure `table` is guarded for `applier`; changes nothing when it
/// already is, so that a reconnect does not take table locks.
pub async fn ensure(client: &Client, table: Guarded<'_>, applier: &str) -> Result<()> {
    let guarded: bool = client
        .query_one(
            "select exists (
               select from pg_trigger
               where tgrelid = $1::text::regclass and tgname = $2 and tgenabled = 'A'
                 and tgargs = convert_to($3, 'UTF8') || '\\x00'::bytea)
             and not exists (
               select from pg_trigger where tgrelid = $1::text::regclass and tgname = $4)",
            &[&table.quoted, &TRIGGER, &applier, &FENCE],
        )
        .await
        .map_err(Error::db("checking the guard"))?
        .get(0);
    if !guarded {
        let t = table.quoted;
        let trigger = ident(TRIGGER);
        // One simple-query string runs as one transaction: all or nothing.
        // A switchover's fence (this database was the tables' source) has
        // kept every writer out until now; the guard takes its place.
        client
            .batch_execute(&format!(
                "drop trigger if exists {trigger} on {t};
                 drop trigger if exists {fence} on {t};
                 create trigger {trigger} before insert or update or delete or truncate on {t}
                   for each statement execute function pgferry.guard({role});
                 alter table {t} enable always trigger {trigger};",
                role = literal(applier),
                fence = ident(FENCE),
            ))
            .await
            .map_err(Error::db(
                "installing the guard (the applier must own the target table)",
            ))?;
        tracing::info!(table = %table.name, applier, "guard installed");
    }
    revoke_other_writers(client, table, applier).await
}

/// Revokes INSERT, UPDATE, DELETE and TRUNCATE from every role but the
/// applier and PUBLIC's grants too. A grant the applier cannot revoke (made
/// by another grantor) is logged, not fatal: the trigger still stands.
async fn revoke_other_writers(client: &Client, table: Guarded<'_>, applier: &str) -> Result<()> {
    let grantees: Vec<String> = client
        .query(
            "select distinct case when a.grantee = 0 then 'public' else quote_ident(r.rolname) end
             from pg_class c, aclexplode(c.relacl) a
             left join pg_roles r on r.oid = a.grantee
             where c.oid = $1::text::regclass
               and a.privilege_type in ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')
               and a.grantee <> c.relowner
               and coalesce(r.rolname <> $2, true)",
            &[&table.quoted, &applier],
        )
        .await
        .map_err(Error::db("reading target table privileges"))?
        .into_iter()
        .map(|row| row.get(0))
        .collect();
    for grantee in grantees {
        let revoke = format!(
            "revoke insert, update, delete, truncate on {} from {grantee}",
            table.quoted
        );
        match client.batch_execute(&revoke).await {
            Ok(()) => tracing::info!(table = %table.name, grantee, "revoked write privileges"),
            Err(error) => {
                tracing::warn!(table = %table.name, grantee, error = %pgferry_runtime::db::describe(&error), "could not revoke write privileges")
            }
        }
    }
    Ok(())
}

/// Whether `source_id` replicates target table `schema`.`table` already
/// (its stream guarded it before).
pub async fn replicates(
    client: &Client,
    source_id: &str,
    schema: &str,
    table: &str,
) -> Result<bool> {
    Ok(client
        .query_one(
            "select exists (select from pgferry.guarded
                            where source_id = $1 and table_schema = $2 and table_name = $3)",
            &[&source_id, &schema, &table],
        )
        .await
        .map_err(Error::db("reading the guarded tables"))?
        .get(0))
}

/// Records which tables `source_id` now replicates (`tables`) and lifts the
/// guard from the ones it no longer does, unless another source still
/// replicates them. Privileges revoked earlier are not granted back.
pub async fn track(client: &Client, source_id: &str, tables: &[Guarded<'_>]) -> Result<()> {
    let schemas: Vec<&str> = tables.iter().map(|t| t.schema).collect();
    let names: Vec<&str> = tables.iter().map(|t| t.table).collect();
    let released = client
        .query(
            "with gone as (
               delete from pgferry.guarded g
               where g.source_id = $1
                 and (g.table_schema, g.table_name) not in
                     (select * from unnest($2::text[], $3::text[]))
               returning g.table_schema, g.table_name
             ), kept as (
               insert into pgferry.guarded select $1, s, t from unnest($2::text[], $3::text[]) u(s, t)
               on conflict do nothing
             )
             select quote_ident(g.table_schema) || '.' || quote_ident(g.table_name)
             from gone g
             where to_regclass(quote_ident(g.table_schema) || '.' || quote_ident(g.table_name)) is not null
               and not exists (select from pgferry.guarded o
                               where o.source_id <> $1 and o.table_schema = g.table_schema
                                 and o.table_name = g.table_name)",
            &[&source_id, &schemas, &names],
        )
        .await
        .map_err(Error::db("tracking guarded tables"))?;
    for row in released {
        let table: String = row.get(0);
        client
            .batch_execute(&format!(
                "drop trigger if exists {} on {table}",
                ident(TRIGGER)
            ))
            .await
            .map_err(Error::db("lifting the guard"))?;
        tracing::info!(
            table,
            source_id,
            "guard lifted: the source no longer replicates it"
        );
    }
    Ok(())
}

/// Lifts the guard from `tables`, which `source_id` no longer replicates:
/// this database took the source role for them (a switchover). Refused if
/// another source replicates one of them too: it would write beside the
/// new source's writers.
pub async fn release(
    client: &impl tokio_postgres::GenericClient,
    source_id: &str,
    tables: &[Guarded<'_>],
) -> Result<()> {
    for table in tables {
        let others: Option<String> = client
            .query_one(
                "with gone as (
                   delete from pgferry.guarded
                   where source_id = $1 and table_schema = $2 and table_name = $3
                 )
                 select string_agg(source_id, ', ') from pgferry.guarded
                 where source_id <> $1 and table_schema = $2 and table_name = $3",
                &[&source_id, &table.schema, &table.table],
            )
            .await
            .map_err(Error::db("lifting the guard"))?
            .get(0);
        if let Some(others) = others {
            return Err(Error::Protocol(format!(
                "table {} is replicated here from sources {others} too: it cannot become writable in a switchover from {source_id}",
                table.name
            )));
        }
        client
            .batch_execute(&format!(
                "drop trigger if exists {} on {}",
                ident(TRIGGER),
                table.quoted
            ))
            .await
            .map_err(Error::db("lifting the guard"))?;
    }
    Ok(())
}

/// A table a source replicates here, with its schema, name and key there.
pub struct SourceName<'a> {
    /// The table here.
    pub guarded: Guarded<'a>,
    /// Its schema on the source.
    pub schema: &'a str,
    /// Its name on the source.
    pub table: &'a str,
    /// Its key.
    pub key_columns: &'a [String],
}

/// Records with each table `source_id` replicates here its name and key on
/// that source (what a promotion replicates it back under), when it changed.
pub async fn name_sources(
    client: &Client,
    source_id: &str,
    tables: &[SourceName<'_>],
) -> Result<()> {
    let column = |f: fn(&SourceName<'_>) -> String| tables.iter().map(f).collect::<Vec<String>>();
    let (schemas, names) = (
        column(|t| t.guarded.schema.to_owned()),
        column(|t| t.guarded.table.to_owned()),
    );
    let (source_schemas, source_tables) = (
        column(|t| t.schema.to_owned()),
        column(|t| t.table.to_owned()),
    );
    let keys = column(|t| serde_json::json!(t.key_columns).to_string());
    client
        .execute(
            "update pgferry.guarded g
                set source_schema = u.ss, source_table = u.st,
                    key_columns = array(select json_array_elements_text(u.k::json))
               from unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) u(s, t, ss, st, k)
              where g.source_id = $1 and g.table_schema = u.s and g.table_name = u.t
                and (g.source_schema, g.source_table, g.key_columns)
                    is distinct from (u.ss, u.st, array(select json_array_elements_text(u.k::json)))",
            &[&source_id, &schemas, &names, &source_schemas, &source_tables, &keys],
        )
        .await
        .map_err(Error::db("recording the tables' names on the source"))?;
    Ok(())
}
