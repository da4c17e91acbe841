//! Registering tables: adding one (its capture triggers, its initial copy),
//! copying one again, and taking one out (removed or set aside).

use tokio_postgres::{Client, GenericClient};

use super::{TableName, bump_version, ensure_installed, lookup};
use crate::error::{Error, Result};

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
/// a bad filter. The sequences the columns it replicates take their
/// defaults from go to the same target with it.
pub async fn add_table(client: &mut Client, spec: &TableSpec) -> Result<Added> {
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
            "select relpersistence = 'u', relkind = 'p',
                    (select string_agg(inhrelid::regclass::text, ', ' order by inhrelid::regclass::text)
                     from pg_inherits where inhparent = $1 and relkind <> 'p')
             from pg_class where oid = $1",
            &[&relid],
        )
        .await
        .map_err(Error::db("add-table"))?;
    if row.get(0) {
        return Err(Error::Unlogged(source.to_string()));
    }
    // A partitioned table's partitions come and go by DDL: created,
    // attached with rows, detached, dropped. Only the DDL watch sees them
    // in the DDL's own transaction.
    if row.get(1) && !super::watches_ddl(&tx).await? {
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
            .query_one("select pgferry.table_key($1)", &[&relid])
            .await
            .map_err(Error::db("add-table: finding the key"))?
            .get(0),
    }
    .ok_or_else(|| Error::NoKey(source.to_string()))?;
    let columns = check_columns(&tx, relid, &source, &key, &spec.columns).await?;
    let filter_columns = match &spec.row_filter {
        Some(filter) => Some(check_filter(&mut tx, relid, &source, filter).await?),
        None => None,
    };
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
                                         target_id, capture_id, filter_columns)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'copy_pending', $10, coalesce($11, 0), $12)
             on conflict (relid, target_id) do update
               set removed = false, removed_batch = null, diverged_at = null,
                   diverged_reason = null, set_aside_batch = null,
                   target_schema = excluded.target_schema,
                   target_name = excluded.target_name, key_columns = excluded.key_columns,
                   columns = excluded.columns, row_filter = excluded.row_filter,
                   filter_columns = excluded.filter_columns,
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
                &filter_columns,
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
    let sequences: Vec<String> = tx
        .query("select pgferry.add_table_sequences($1)", &[&table_id])
        .await
        .map_err(Error::db("add-table: registering its sequences"))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    bump_version(&tx, target_id).await?;
    tx.commit().await.map_err(Error::db("add-table"))?;
    tracing::info!(table = %source, target = %target, table_id, key = ?key, sequences = ?sequences, "table added; its copy goes with the next batch");
    Ok(Added {
        table_id,
        sequences,
    })
}

/// A table `add_table` registered.
#[derive(Debug)]
pub struct Added {
    /// Its registration's id.
    pub table_id: i32,
    /// The sequences its columns take their defaults from, registered
    /// with it (those the target did not have registered already).
    pub sequences: Vec<String>,
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
) -> Result<Vec<i16>> {
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
                 with (publish = 'insert', publish_via_partition_root)"
            ))
            .await
            .map_err(server_says)?;
    }
    // The columns it names, by number, as the server resolved them: a view
    // of the filter depends on each (a schema change compares numbers,
    // where a name's text could be part of another).
    check
        .batch_execute(&format!(
            "create temp view pgferry_filter_probe as select ({filter}) as f from only {rel}"
        ))
        .await
        .map_err(server_says)?;
    let named: Vec<i16> = check
        .query_one(
            "select coalesce(array_agg(distinct d.refobjsubid::int2), '{}')
             from pg_rewrite w
             join pg_depend d on d.classid = 'pg_rewrite'::regclass and d.objid = w.oid
             where w.ev_class = 'pg_temp.pgferry_filter_probe'::regclass
               and d.refobjid = $1 and d.refobjsubid > 0",
            &[&relid],
        )
        .await
        .map_err(Error::db("add-table: the columns a row filter names"))?
        .get(0);
    // The publication and the view: rolled back.
    Ok(named)
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
/// target missed changes that no longer wait in the queue (or could not
/// apply them: the table was altered without the DDL watch).
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
             returning target_id, capture_id",
            &[&table_id],
        )
        .await
        .map_err(Error::db("copying a table again"))?;
    // Its capture made again for the table as it is now, whose shape it
    // records: one altered without the DDL watch is copied in its new one.
    tx.execute("select pgferry.attach($1)", &[&row.get::<_, i32>(1)])
        .await
        .map_err(Error::db("copying a table again"))?;
    bump_version(&tx, row.get(0)).await?;
    tx.commit()
        .await
        .map_err(Error::db("copying a table again"))
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
        // The sequences that came with the table leave with it.
        tx.execute(
            "delete from pgferry.sequences s using pgferry.tables t
             where s.table_id = t.table_id and t.target_id = $1 and t.removed",
            &[&target_id],
        )
        .await
        .map_err(Error::db("remove-table: its sequences"))?;
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
