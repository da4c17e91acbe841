//! The capture side in the source database: installing and upgrading
//! pgferry's schema, and adding and removing the capture triggers of a table.

use tokio_postgres::{Client, GenericClient};

use pgferry_runtime::install::Schema;

use crate::cli::CaptureChoice;
use crate::error::{Error, Result};

/// Migrations in order; `install` runs those newer than the database's.
pub(crate) const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../sql/migrations/001_schema.sql")),
    (2, include_str!("../sql/migrations/002_cut_and_capture.sql")),
    (
        3,
        include_str!("../sql/migrations/003_update_statements.sql"),
    ),
    (4, include_str!("../sql/migrations/004_lean_queue.sql")),
    (5, include_str!("../sql/migrations/005_statement_rows.sql")),
    (
        6,
        include_str!("../sql/migrations/006_statement_capture.sql"),
    ),
    (7, include_str!("../sql/migrations/007_targets.sql")),
    (8, include_str!("../sql/migrations/008_status_views.sql")),
    (9, include_str!("../sql/migrations/009_fan_out.sql")),
    (
        10,
        include_str!("../sql/migrations/010_targets_together.sql"),
    ),
    (11, include_str!("../sql/migrations/011_exact_values.sql")),
    (12, include_str!("../sql/migrations/012_divergence.sql")),
    (13, include_str!("../sql/migrations/013_verify.sql")),
];

/// The source schema: the migrations, every function's one live body
/// (each after those it calls from plain SQL), and the triggers re-made.
pub const SCHEMA: Schema = Schema {
    migrations: MIGRATIONS,
    functions: &[
        pgferry_runtime::TEXT_FORM_SQL,
        include_str!("../sql/functions/replicated_column_lists.sql"),
        include_str!("../sql/functions/detach.sql"),
        include_str!("../sql/functions/attach.sql"),
        include_str!("../sql/functions/capture.sql"),
        include_str!("../sql/functions/capture_rows.sql"),
        include_str!("../sql/functions/capture_deletes.sql"),
        include_str!("../sql/functions/capture_row.sql"),
        include_str!("../sql/functions/xid8_after.sql"),
        include_str!("../sql/functions/committed_ranges.sql"),
        include_str!("../sql/functions/project.sql"),
        include_str!("../sql/functions/route.sql"),
        include_str!("../sql/functions/cut_batches.sql"),
        include_str!("../sql/functions/cut_check.sql"),
        include_str!("../sql/functions/batch_changes.sql"),
        include_str!("../sql/functions/queue_floor.sql"),
        include_str!("../sql/functions/trim_queue.sql"),
        include_str!("../sql/functions/forget_removed.sql"),
        include_str!("../sql/functions/acknowledge.sql"),
        include_str!("../sql/functions/watch_ddl.sql"),
        include_str!("../sql/functions/refuse_rewrite.sql"),
        include_str!("../sql/functions/capture_on.sql"),
        include_str!("../sql/functions/notice_capture_off.sql"),
    ],
    after_change: include_str!("../sql/after_change.sql"),
};

/// Creates pgferry's schema, or upgrades it in place; a no-op when current.
/// Returns the version before and after.
pub async fn install(client: &mut Client) -> Result<(i32, i32)> {
    Ok(pgferry_runtime::install::install(client, &SCHEMA).await?)
}

/// The extension with the compiled capture functions (its name is also in
/// the `pgferry.status` view, migration 008).
pub(crate) const EXTENSION: &str = "pgferry_capture";

/// Makes the capture triggers call the compiled functions or the PL/pgSQL
/// ones, as `choice` says, and re-makes every table's triggers if that
/// changed (attach calls the compiled ones whenever they exist), in one
/// transaction. Returns whether the compiled ones are in use.
pub async fn choose(client: &mut Client, choice: CaptureChoice) -> Result<bool> {
    let mut tx = client
        .transaction()
        .await
        .map_err(Error::db("choosing the capture"))?;
    let row = tx
        .query_one(
            "select exists (select from pg_available_extensions where name = $1),
                    exists (select from pg_extension where extname = $1)",
            &[&EXTENSION],
        )
        .await
        .map_err(Error::db("looking for the compiled capture"))?;
    let (available, installed): (bool, bool) = (row.get(0), row.get(1));
    let wanted = match choice {
        CaptureChoice::Plpgsql => false,
        CaptureChoice::Auto | CaptureChoice::Compiled if installed => true,
        CaptureChoice::Compiled if !available => {
            return Err(Error::CompiledCaptureUnavailable(
                "which this server does not have".into(),
            ));
        }
        CaptureChoice::Auto if !available => false,
        CaptureChoice::Auto | CaptureChoice::Compiled => {
            // A failure (the role may not create it) leaves the transaction
            // usable through the savepoint.
            let savepoint = tx
                .savepoint("create_extension")
                .await
                .map_err(Error::db("choosing the capture"))?;
            match savepoint
                .batch_execute(&format!("create extension {EXTENSION} schema pgferry"))
                .await
            {
                Ok(()) => {
                    savepoint
                        .commit()
                        .await
                        .map_err(Error::db("choosing the capture"))?;
                    true
                }
                Err(err) if choice == CaptureChoice::Compiled => {
                    return Err(Error::CompiledCaptureUnavailable(format!(
                        "which could not be created: {}",
                        pgferry_runtime::db::describe(&err)
                    )));
                }
                Err(err) => {
                    tracing::warn!(error = %pgferry_runtime::db::describe(&err), "the compiled capture could not be created; using PL/pgSQL");
                    false
                }
            }
        }
    };
    if wanted != installed {
        if !wanted {
            // Cascade: the triggers that call its functions, made again below.
            tx.batch_execute(&format!("drop extension {EXTENSION} cascade"))
                .await
                .map_err(Error::db("dropping the compiled capture"))?;
        }
        tx.batch_execute(SCHEMA.after_change)
            .await
            .map_err(Error::db("re-making the capture triggers"))?;
    }
    tx.commit()
        .await
        .map_err(Error::db("choosing the capture"))?;
    Ok(wanted)
}

/// Fails with [`Error::NotInstalled`] unless `install` has run, and with
/// an install error unless it ran this binary's scripts.
pub async fn ensure_installed(client: &Client) -> Result<()> {
    if pgferry_runtime::install::is_current(client, MIGRATIONS).await? {
        Ok(())
    } else {
        Err(Error::NotInstalled)
    }
}

/// A table name split by PostgreSQL's own rules (quotes, case folding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    /// The schema.
    pub schema: String,
    /// The table.
    pub name: String,
}

impl TableName {
    /// Parses `SCHEMA.TABLE` the way the server does (`parse_ident`).
    pub async fn parse(client: &Client, text: &str) -> Result<TableName> {
        let parts: Vec<String> = client
            .query_one("select parse_ident($1)", &[&text])
            .await
            .map_err(|_| Error::BadTableName(text.to_owned()))?
            .get(0);
        match <[String; 2]>::try_from(parts) {
            Ok([schema, name]) => Ok(TableName { schema, name }),
            Err(_) => Err(Error::BadTableName(text.to_owned())),
        }
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// What `add-table` registers.
#[derive(Debug, Clone, Default)]
pub struct TableSpec {
    /// The source table, as the user wrote it.
    pub table: String,
    /// The target it goes to (`--target`), when the source has several.
    pub to: Option<String>,
    /// The target table, when not the same name.
    pub target: Option<String>,
    /// Replicated columns (empty: all).
    pub columns: Vec<String>,
    /// Row filter predicate.
    pub row_filter: Option<String>,
    /// Ask the target agent to create the table if missing.
    pub create_target: bool,
}

/// Starts replicating a table to a target: registers it for its initial
/// copy (the target's next batch carries it) and (re)creates its capture
/// triggers, which take the changes once for all its targets, in one
/// transaction. Refuses, changing nothing, a table that is missing, keyless
/// or already replicated to that target, a column list without the key, or
/// a bad filter. Returns the new table id.
pub async fn add_table(client: &mut Client, spec: &TableSpec) -> Result<i32> {
    ensure_installed(client).await?;
    let source = TableName::parse(client, &spec.table).await?;
    let target = match &spec.target {
        Some(t) => TableName::parse(client, t).await?,
        None => source.clone(),
    };
    let mut tx = client.transaction().await.map_err(Error::db("add-table"))?;
    let target_id = crate::targets::resolve(&tx, spec.to.as_deref()).await?;
    let (relid, relkind) = lookup(&tx, &source).await?;
    if relkind != "r" && relkind != "p" {
        return Err(Error::NotATable(source.to_string()));
    }
    let row = tx
        .query_one(
            "select relpersistence = 'u', relkind = 'p' or relispartition,
                    (select string_agg(inhrelid::regclass::text, ', ' order by inhrelid::regclass::text)
                     from pg_inherits where inhparent = $1)
             from pg_class where oid = $1",
            &[&relid],
        )
        .await
        .map_err(Error::db("add-table"))?;
    if row.get(0) {
        return Err(Error::Unlogged(source.to_string()));
    }
    // Statement triggers fire only for the table a statement names, and a
    // row an UPDATE moves to another partition fires no UPDATE trigger.
    if row.get(1) {
        return Err(Error::Partitioned(source.to_string()));
    }
    if let Some(children) = row.get::<_, Option<String>>(2) {
        return Err(Error::InheritanceParent {
            table: source.to_string(),
            children,
        });
    }
    // A table already captured for another target keeps its key: the
    // changes queued once carry one key for all.
    let captured: Option<(i32, Vec<String>)> = tx
        .query_opt(
            "select capture_id, key_columns from pgferry.tables
             where relid = $1 order by removed, table_id limit 1",
            &[&relid],
        )
        .await
        .map_err(Error::db("add-table"))?
        .map(|row| (row.get(0), row.get(1)));
    let key: Vec<String> = match &captured {
        Some((_, key)) => Some(key.clone()),
        None => tx
        .query_opt(
            "select array(select a.attname::text
                          from unnest((i.indkey::int2[])[0:i.indnkeyatts - 1]) with ordinality k(attnum, ord)
                          join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
                          order by k.ord)
             from pg_index i
             where i.indrelid = $1 and i.indisunique and i.indisvalid
               and i.indpred is null and i.indexprs is null
               and not exists (select from unnest(i.indkey::int2[]) k(attnum)
                               join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
                               where not a.attnotnull)
             order by i.indisprimary desc, i.indnkeyatts
             limit 1",
            &[&relid],
        )
        .await
        .map_err(Error::db("add-table: finding the key"))?
        .map(|row| row.get(0)),
    }
    .ok_or_else(|| Error::NoKey(source.to_string()))?;
    let columns = check_columns(&tx, relid, &source, &key, &spec.columns).await?;
    if let Some(filter) = &spec.row_filter {
        check_filter(&mut tx, relid, &source, filter).await?;
    }
    let known: Option<bool> = tx
        .query_opt(
            "select removed or diverged_at is not null from pgferry.tables
             where relid = $1 and target_id = $2",
            &[&relid, &target_id],
        )
        .await
        .map_err(Error::db("add-table"))?
        .map(|row| row.get(0));
    if known == Some(false) {
        return Err(Error::AlreadyAdded(source.to_string()));
    }
    let (table_id, capture_id): (i32, i32) = tx
        .query_one(
            "insert into pgferry.tables (relid, source_schema, source_name, target_schema, target_name,
                                         key_columns, columns, row_filter, create_target, state,
                                         target_id, capture_id)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'copy_pending', $10, coalesce($11, 0))
             on conflict (relid, target_id) do update
               set removed = false, removed_batch = null, diverged_at = null,
                   diverged_reason = null, set_aside_batch = null,
                   target_schema = excluded.target_schema,
                   target_name = excluded.target_name, key_columns = excluded.key_columns,
                   columns = excluded.columns, row_filter = excluded.row_filter,
                   create_target = excluded.create_target, state = 'copy_pending',
                   copy_batch = null, copy_snapshot = null, copied_at = null
             returning table_id, capture_id",
            &[
                &relid,
                &source.schema,
                &source.name,
                &target.schema,
                &target.name,
                &key,
                &columns,
                &spec.row_filter,
                &spec.create_target,
                &target_id,
                &captured.as_ref().map(|(capture_id, _)| *capture_id),
            ],
        )
        .await
        .map_err(Error::db("add-table: registering the table"))
        .map(|row| (row.get(0), row.get(1)))?;
    // A table captured for no other target is captured under its own id.
    let capture_id = if capture_id == 0 {
        tx.execute(
            "update pgferry.tables set capture_id = table_id where table_id = $1",
            &[&table_id],
        )
        .await
        .map_err(Error::db("add-table: registering the table"))?;
        table_id
    } else {
        capture_id
    };
    // Creating the triggers waits for the table's writers to finish: a
    // transaction that wrote before capture began commits before the copy's
    // snapshot is taken, so its rows are in the copy.
    tx.execute("select pgferry.attach($1)", &[&capture_id])
        .await
        .map_err(
            |source_err| match (&spec.row_filter, source_err.as_db_error()) {
                (Some(_), Some(db)) => Error::BadFilter {
                    table: source.to_string(),
                    reason: db.message().to_owned(),
                },
                _ => Error::Db {
                    context: "add-table: creating the capture triggers",
                    source: source_err,
                },
            },
        )?;
    bump_version(&tx, target_id).await?;
    tx.commit().await.map_err(Error::db("add-table"))?;
    tracing::info!(table = %source, target = %target, table_id, key = ?key, "table added; its copy goes with the next batch");
    Ok(table_id)
}

/// Refuses a row filter that is not one boolean expression over the row
/// alone, as PostgreSQL 15 refuses a publication's: no subquery, no other
/// table, no aggregate or window function, no volatile or stable function
/// (the filter is evaluated once per change at capture and must give the
/// same answer on every evaluation), nothing user-defined. The server
/// itself decides, by a publication created and rolled back with the
/// filter; on one line, so a comment cannot hide the closing parenthesis.
/// A SELECT of the bare expression refuses what only parses inside
/// parentheses (`a > 1) or (true`).
async fn check_filter(
    tx: &mut tokio_postgres::Transaction<'_>,
    relid: u32,
    source: &TableName,
    filter: &str,
) -> Result<()> {
    let refuse = |reason: String| Error::BadFilter {
        table: source.to_string(),
        reason,
    };
    let server_says = |err: tokio_postgres::Error| {
        refuse(format!(
            "a row filter is one boolean expression over the row alone, as a PostgreSQL 15 publication's: {}",
            match err.as_db_error() {
                Some(db) => match db.detail() {
                    Some(detail) => format!("{} ({detail})", db.message()),
                    None => db.message().to_owned(),
                },
                None => err.to_string(),
            }
        ))
    };
    if filter.contains(';') || filter.contains('\n') || filter.contains('\r') {
        return Err(refuse(
            "a row filter is one SQL expression on one line and cannot contain `;`".into(),
        ));
    }
    let rel: String = tx
        .query_one("select $1::oid::regclass::text", &[&relid])
        .await
        .map_err(Error::db("add-table"))?
        .get(0);
    let check = tx.transaction().await.map_err(Error::db("add-table"))?;
    check
        .prepare(&format!("select {filter} from only {rel}"))
        .await
        .map_err(server_says)?;
    let version: i32 = check
        .query_one("select current_setting('server_version_num')::int", &[])
        .await
        .map_err(Error::db("add-table"))?
        .get(0);
    if version >= 150_000 {
        check
            .batch_execute(&format!(
                "create publication pgferry_filter_check for table only {rel} where ({filter}) \
                 with (publish = 'insert')"
            ))
            .await
            .map_err(server_says)?;
    }
    // Dropped: rolled back.
    Ok(())
}

/// The table's oid and relkind, or [`Error::UnknownTable`].
async fn lookup(client: &impl GenericClient, name: &TableName) -> Result<(u32, String)> {
    let row = client
        .query_opt(
            "select c.oid, c.relkind::text from pg_class c join pg_namespace n on n.oid = c.relnamespace
             where n.nspname = $1 and c.relname = $2",
            &[&name.schema, &name.name],
        )
        .await
        .map_err(Error::db("looking up a relation"))?
        .ok_or_else(|| Error::UnknownTable(name.to_string()))?;
    Ok((row.get(0), row.get(1)))
}

/// Checks a `--columns` list: every column exists and the key is in it.
/// Returns the list in table order, or None for all columns.
async fn check_columns(
    client: &impl GenericClient,
    relid: u32,
    table: &TableName,
    key: &[String],
    wanted: &[String],
) -> Result<Option<Vec<String>>> {
    if wanted.is_empty() {
        return Ok(None);
    }
    let all: Vec<String> = client
        .query_one(
            "select array(select attname::text from pg_attribute
                          where attrelid = $1 and attnum > 0 and not attisdropped order by attnum)",
            &[&relid],
        )
        .await
        .map_err(Error::db("add-table: reading columns"))?
        .get(0);
    let wanted: Vec<String> = wanted.iter().map(|c| c.trim().to_owned()).collect();
    let unknown: Vec<&str> = wanted
        .iter()
        .filter(|c| !all.contains(c))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(Error::BadColumns {
            table: table.to_string(),
            reason: format!("no such columns: {}", unknown.join(", ")),
        });
    }
    let missing_key: Vec<&str> = key
        .iter()
        .filter(|k| !wanted.contains(k))
        .map(String::as_str)
        .collect();
    if !missing_key.is_empty() {
        return Err(Error::BadColumns {
            table: table.to_string(),
            reason: format!(
                "--columns must include the key column(s) {}",
                missing_key.join(", ")
            ),
        });
    }
    Ok(Some(
        all.into_iter().filter(|c| wanted.contains(c)).collect(),
    ))
}

/// Copies registration `table_id` again with its target's next batch, as
/// `add-table` does a diverged one: `repair` of a table set aside, whose
/// target missed changes that no longer wait in the queue.
pub async fn copy_again(client: &mut Client, table_id: i32) -> Result<()> {
    let tx = client
        .transaction()
        .await
        .map_err(Error::db("copying a table again"))?;
    let row = tx
        .query_one(
            "update pgferry.tables
                set diverged_at = null, diverged_reason = null, set_aside_batch = null,
                    state = 'copy_pending', copy_batch = null, copy_snapshot = null, copied_at = null
              where table_id = $1
             returning target_id",
            &[&table_id],
        )
        .await
        .map_err(Error::db("copying a table again"))?;
    bump_version(&tx, row.get(0)).await?;
    tx.commit()
        .await
        .map_err(Error::db("copying a table again"))
}

/// Tells a running agent that a target's table or sequence list changed.
async fn bump_version(client: &impl GenericClient, target_id: i32) -> Result<()> {
    client
        .execute(
            "update pgferry.targets set tables_version = tables_version + 1 where target_id = $1",
            &[&target_id],
        )
        .await
        .map_err(Error::db("bumping the table list version"))?;
    Ok(())
}

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

/// Starts keeping the target's copy of `sequence` at or above the source's.
pub async fn add_sequence(
    client: &mut Client,
    sequence: &str,
    target: Option<&str>,
    to: Option<&str>,
    create_target: bool,
) -> Result<i32> {
    ensure_installed(client).await?;
    let source = TableName::parse(client, sequence).await?;
    let target = match target {
        Some(t) => TableName::parse(client, t).await?,
        None => source.clone(),
    };
    let tx = client
        .transaction()
        .await
        .map_err(Error::db("add-sequence"))?;
    let target_id = crate::targets::resolve(&tx, to).await?;
    let (relid, relkind) = lookup(&tx, &source).await?;
    if relkind != "S" {
        return Err(Error::NotASequence(source.to_string()));
    }
    let seq_id: i32 = tx
        .query_opt(
            "insert into pgferry.sequences (relid, source_schema, source_name, target_schema,
                                            target_name, create_target, target_id)
             values ($1, $2, $3, $4, $5, $6, $7) on conflict (relid, target_id) do nothing
             returning seq_id",
            &[
                &relid,
                &source.schema,
                &source.name,
                &target.schema,
                &target.name,
                &create_target,
                &target_id,
            ],
        )
        .await
        .map_err(Error::db("add-sequence"))?
        .ok_or_else(|| Error::SequenceAlreadyAdded(source.to_string()))?
        .get(0);
    bump_version(&tx, target_id).await?;
    tx.commit().await.map_err(Error::db("add-sequence"))?;
    tracing::info!(sequence = %source, target = %target, seq_id, "sequence added");
    Ok(seq_id)
}

/// Stops replicating `table` to target `to` (every target when `None`) at
/// once: its capture stops unless another target still takes it, and no
/// batch the target has not acknowledged carries its changes any more,
/// even one cut before, so a table whose changes a target cannot apply
/// stops holding it back. The target keeps the table as of the last batch
/// it acknowledged (or a later one it applied before hearing of this); the
/// registration goes and the target agent lifts its guard.
pub async fn remove_table(client: &mut Client, table: &str, to: Option<&str>) -> Result<()> {
    let (tx, source, removed) = take_out(
        client,
        table,
        to,
        "remove-table",
        "removed = true, removed_batch = g.acked_batch",
    )
    .await?;
    tx.execute("select pgferry.attach($1)", &[&removed[0].get::<_, i32>(1)])
        .await
        .map_err(Error::db("remove-table: changing the capture triggers"))?;
    for row in &removed {
        let target_id: i32 = row.get(0);
        tx.execute("select pgferry.forget_removed($1)", &[&target_id])
            .await
            .map_err(Error::db("remove-table"))?;
        bump_version(&tx, target_id).await?;
    }
    tx.commit().await.map_err(Error::db("remove-table"))?;
    tracing::info!(table = %source, targets = removed.len(), "table removed");
    Ok(())
}

/// Sets a table aside for a target (or every target): it stays registered
/// and captured, but no batch its target has not acknowledged carries its
/// changes any more, so one it cannot apply stops holding the target's
/// other tables back; status shows it diverged until `add-table` copies it
/// again.
pub async fn set_aside(client: &mut Client, table: &str, to: Option<&str>) -> Result<()> {
    let (tx, source, set) = take_out(
        client,
        table,
        to,
        "set-aside",
        "diverged_at = now(), diverged_reason = 'set aside by an operator',
         set_aside_batch = g.acked_batch",
    )
    .await?;
    tx.commit().await.map_err(Error::db("set-aside"))?;
    tracing::warn!(table = %source, targets = set.len(), "table set aside: its targets no longer get its changes until add-table copies it again");
    Ok(())
}

/// Takes `table` out of the streams of target `to` (every target when
/// `None`): sets `set` (which may read the target's row as `g`) on its live
/// registrations, in a transaction holding the batch list's lock, so that
/// it is ordered against the cutter and the acknowledgements. Returns the
/// open transaction, the table and each registration's target id and
/// capture id (at least one, or [`Error::NotReplicated`]).
async fn take_out<'a>(
    client: &'a mut Client,
    table: &str,
    to: Option<&str>,
    command: &'static str,
    set: &str,
) -> Result<(
    tokio_postgres::Transaction<'a>,
    TableName,
    Vec<tokio_postgres::Row>,
)> {
    ensure_installed(client).await?;
    let source = TableName::parse(client, table).await?;
    let tx = client.transaction().await.map_err(Error::db(command))?;
    let only = match to {
        Some(name) => Some(crate::targets::resolve(&tx, Some(name)).await?),
        None => None,
    };
    tx.batch_execute("lock table pgferry.batch in share row exclusive mode")
        .await
        .map_err(Error::db(command))?;
    let update = format!(
        "update pgferry.tables t set {set}
           from pgferry.targets g
          where g.target_id = t.target_id
            and t.source_schema = $1 and t.source_name = $2 and not t.removed
            and ($3::int is null or t.target_id = $3)
         returning t.target_id, t.capture_id"
    );
    let rows = tx
        .query(&update, &[&source.schema, &source.name, &only])
        .await
        .map_err(Error::db(command))?;
    if rows.is_empty() {
        return Err(Error::NotReplicated(source.to_string()));
    }
    Ok((tx, source, rows))
}
