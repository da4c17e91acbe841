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
            add_table(client, &spec)
                .await
                .map(|table_id| report.table_ids.push(table_id))
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
