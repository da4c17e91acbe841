//! Adding a whole schema: every table with a key and every sequence.

use tokio_postgres::Client;

use super::{TableSpec, add_sequence, add_table, ensure_installed};
use crate::error::{Error, Result};

/// Outcome of adding a whole schema.
#[derive(Debug, Default)]
pub struct SchemaReport {
    /// Tables and sequences added.
    pub added: Vec<String>,
    /// The ids of the tables added.
    pub table_ids: Vec<i32>,
    /// Tables and sequences skipped, with the reason.
    pub skipped: Vec<(String, String)>,
}

/// Adds every table of `schema` that has a key, and every sequence, except
/// names matching an `exclude` LIKE pattern; reports what it skipped and why.
pub async fn add_schema(
    client: &mut Client,
    schema: &str,
    exclude: &[String],
    to: Option<&str>,
    create_target: bool,
) -> Result<SchemaReport> {
    ensure_installed(client).await?;
    let rows = client
        .query(
            "select quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relkind::text,
                    exists (select from unnest($2::text[]) p where c.relname like p)
             from pg_class c join pg_namespace n on n.oid = c.relnamespace
             where n.nspname = $1 and c.relkind in ('r', 'p', 'S') and not c.relispartition
             order by c.relkind, c.relname",
            &[&schema, &exclude],
        )
        .await
        .map_err(Error::db("add-table --schema: listing relations"))?;
    if rows.is_empty() {
        return Err(Error::EmptySchema(schema.to_owned()));
    }
    let mut report = SchemaReport::default();
    for row in rows {
        let name: String = row.get(0);
        let kind: String = row.get(1);
        if row.get(2) {
            report.skipped.push((name, "matches --exclude".into()));
            continue;
        }
        let added = if kind == "S" {
            add_sequence(client, &name, None, to, create_target)
                .await
                .map(|_| ())
        } else {
            let spec = TableSpec {
                table: name.clone(),
                to: to.map(str::to_owned),
                create_target,
                ..TableSpec::default()
            };
            add_table(client, &spec).await.map(|added| {
                report.table_ids.push(added.table_id);
                report.added.extend(added.sequences);
            })
        };
        match added {
            Ok(()) => report.added.push(name),
            Err(
                err @ (Error::NoKey(_)
                | Error::Unlogged(_)
                | Error::Partitioned(_)
                | Error::AlreadyAdded(_)
                | Error::NotATable(_)
                | Error::SequenceAlreadyAdded(_)),
            ) => report.skipped.push((name, err.to_string())),
            Err(err) => return Err(err),
        }
    }
    Ok(report)
}

/// Has target `to` (the only one when `None`) take each table created in
/// `schema` from now on (`add-table --schema --follow`; see
/// `follow_table.sql`), skipping names matching an `exclude` pattern. The
/// DDL watch must run: it is what sees the CREATE.
pub async fn follow_schema(
    client: &Client,
    schema: &str,
    exclude: &[String],
    to: Option<&str>,
    create_target: bool,
) -> Result<()> {
    if !super::watches_ddl(client).await? {
        return Err(pgferry_runtime::config::ConfigError::Invalid {
            setting: "follow",
            reason: "new tables are seen by the DDL watch, which an install by a superuser creates; add them with add-table".into(),
        }
        .into());
    }
    let target_id = crate::targets::resolve(client, to).await?;
    client
        .execute(
            "insert into pgferry.followed_schemas (target_id, schema_name, exclude, create_target)
             values ($1, $2, $3, $4)
             on conflict (target_id, schema_name) do update
               set exclude = excluded.exclude, create_target = excluded.create_target",
            &[&target_id, &schema, &exclude, &create_target],
        )
        .await
        .map_err(Error::db("add-table --follow"))?;
    Ok(())
}
