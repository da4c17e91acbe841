//! Installing and upgrading pgferry's schema in the source database, and
//! choosing the capture functions the triggers call.

use tokio_postgres::Client;

use pgferry_runtime::install::Schema;

use crate::cli::CaptureChoice;
use crate::error::{Error, Result};

/// Migrations in order; `install` runs those newer than the database's.
pub(crate) const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../../sql/migrations/001_schema.sql")),
    (
        2,
        include_str!("../../sql/migrations/002_cut_and_capture.sql"),
    ),
    (
        3,
        include_str!("../../sql/migrations/003_update_statements.sql"),
    ),
    (4, include_str!("../../sql/migrations/004_lean_queue.sql")),
    (
        5,
        include_str!("../../sql/migrations/005_statement_rows.sql"),
    ),
    (
        6,
        include_str!("../../sql/migrations/006_statement_capture.sql"),
    ),
    (7, include_str!("../../sql/migrations/007_targets.sql")),
    (8, include_str!("../../sql/migrations/008_status_views.sql")),
    (9, include_str!("../../sql/migrations/009_fan_out.sql")),
    (
        10,
        include_str!("../../sql/migrations/010_targets_together.sql"),
    ),
    (
        11,
        include_str!("../../sql/migrations/011_exact_values.sql"),
    ),
    (12, include_str!("../../sql/migrations/012_divergence.sql")),
    (13, include_str!("../../sql/migrations/013_verify.sql")),
    (
        14,
        include_str!("../../sql/migrations/014_schema_changes.sql"),
    ),
    (15, include_str!("../../sql/migrations/015_known_ops.sql")),
    (
        16,
        include_str!("../../sql/migrations/016_table_sequences.sql"),
    ),
    (
        17,
        include_str!("../../sql/migrations/017_filter_columns.sql"),
    ),
    (18, include_str!("../../sql/migrations/018_partitions.sql")),
    (19, include_str!("../../sql/migrations/019_switchover.sql")),
];

/// The source schema: the migrations, every function's one live body
/// (each after those it calls from plain SQL), and the triggers re-made.
pub const SCHEMA: Schema = Schema {
    side: pgferry_runtime::install::Side::Source,
    migrations: MIGRATIONS,
    functions: &[
        pgferry_runtime::TEXT_FORM_SQL,
        include_str!("../../sql/functions/replicated_column_lists.sql"),
        include_str!("../../sql/functions/table_shape.sql"),
        include_str!("../../sql/functions/table_key.sql"),
        include_str!("../../sql/functions/detach.sql"),
        include_str!("../../sql/functions/attach.sql"),
        include_str!("../../sql/functions/capture.sql"),
        include_str!("../../sql/functions/capture_rows.sql"),
        include_str!("../../sql/functions/capture_updates.sql"),
        include_str!("../../sql/functions/capture_deletes.sql"),
        include_str!("../../sql/functions/capture_row.sql"),
        include_str!("../../sql/functions/partition_triggers.sql"),
        include_str!("../../sql/functions/truncate_begins.sql"),
        include_str!("../../sql/functions/truncate_ends.sql"),
        include_str!("../../sql/functions/follow_partitions.sql"),
        include_str!("../../sql/functions/xid8_after.sql"),
        include_str!("../../sql/functions/committed_ranges.sql"),
        include_str!("../../sql/functions/project.sql"),
        include_str!("../../sql/functions/route.sql"),
        include_str!("../../sql/functions/cut_batches.sql"),
        include_str!("../../sql/functions/cut_check.sql"),
        include_str!("../../sql/functions/schema_change_for.sql"),
        include_str!("../../sql/functions/shape_columns.sql"),
        include_str!("../../sql/functions/earlier_forms.sql"),
        include_str!("../../sql/functions/batch_changes.sql"),
        include_str!("../../sql/functions/lost_changes.sql"),
        include_str!("../../sql/functions/queue_floor.sql"),
        include_str!("../../sql/functions/trim_queue.sql"),
        include_str!("../../sql/functions/forget_removed.sql"),
        include_str!("../../sql/functions/forget_tables.sql"),
        include_str!("../../sql/functions/switched_over.sql"),
        include_str!("../../sql/functions/acknowledge.sql"),
        include_str!("../../sql/functions/record_schema_change.sql"),
        include_str!("../../sql/functions/record_schema_changes.sql"),
        include_str!("../../sql/functions/column_sequences.sql"),
        include_str!("../../sql/functions/add_table_sequences.sql"),
        include_str!("../../sql/functions/follow_table.sql"),
        include_str!("../../sql/functions/fenced.sql"),
        include_str!("../../sql/functions/fence.sql"),
        include_str!("../../sql/functions/take_over.sql"),
        include_str!("../../sql/functions/watch_ddl.sql"),
        include_str!("../../sql/functions/watch_drop.sql"),
        include_str!("../../sql/functions/note_rewrite.sql"),
        include_str!("../../sql/functions/capture_on.sql"),
        include_str!("../../sql/functions/notice_capture_off.sql"),
        include_str!("../../sql/functions/notice_shape_changed.sql"),
    ],
    after_change: include_str!("../../sql/after_change.sql"),
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
    // An extension of an older version (built before this binary): its
    // new functions, and every table's triggers made again to call them.
    let older: bool = tx
        .query_one(
            "select coalesce((select extversion from pg_extension where extname = $1)
                             <> (select default_version from pg_available_extensions where name = $1),
                             false)",
            &[&EXTENSION],
        )
        .await
        .map_err(Error::db("looking for the compiled capture"))?
        .get(0);
    if wanted && installed && older {
        tx.batch_execute(&format!("alter extension {EXTENSION} update"))
            .await
            .map_err(Error::db("updating the compiled capture"))?;
    }
    if wanted != installed || (wanted && older) {
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
    if pgferry_runtime::install::is_current(client, &SCHEMA).await? {
        Ok(())
    } else {
        Err(Error::NotInstalled)
    }
}

/// Whether the DDL watch runs: its three event triggers, which only an
/// install by a superuser creates, are there and enabled.
pub async fn watches_ddl(client: &impl tokio_postgres::GenericClient) -> Result<bool> {
    let row = client
        .query_one(
            "select count(*) = 3 from pg_event_trigger
             where evtname in ('pgferry_watch_ddl', 'pgferry_note_rewrite', 'pgferry_watch_drop')
               and evtenabled = 'A'",
            &[],
        )
        .await
        .map_err(Error::db("looking for the DDL watch"))?;
    Ok(row.get(0))
}

#[cfg(test)]
mod tests {
    use pgferry_proto::change::ChangeKind;

    #[test]
    fn the_queue_takes_exactly_the_kinds_the_agents_know() {
        let letters: Vec<String> = ChangeKind::QUEUE_OPS
            .iter()
            .map(|op| format!("'{op}'"))
            .collect();
        let check = format!("check (op in ({}))", letters.join(", "));
        assert!(
            super::MIGRATIONS
                .iter()
                .any(|(_, sql)| sql.contains(&check)),
            "no migration has {check}"
        );
    }
}
