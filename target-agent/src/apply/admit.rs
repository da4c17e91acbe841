//! Admission of a stream: the target's schema version, the applier
//! session's settings, every announced table and sequence checked and
//! guarded, and the source's progress read. Nothing is written to a
//! replicated table here.

use std::collections::HashMap;
use std::sync::Arc;

use pgferry_proto::wire;
use tokio_postgres::Client;

use super::Applier;
use super::copy::Copier;
use super::retry::Retries;
use super::tables::Tables;
use super::transaction::Transaction;
use crate::error::{Error, Result};
use crate::guard;
use crate::schema::{self, TablePlan};

impl Applier {
    /// Checks every announced table, guards it, and reads the source's
    /// progress. Nothing is written to a replicated table here. Each batch's
    /// changes pass a window of `compact_window` bytes that drops those a
    /// later change of the same row overwrites (see [`super::compact`]).
    pub async fn start(
        client: Client,
        hello: &wire::Hello,
        retries: Arc<Retries>,
        compact_window: usize,
    ) -> Result<Applier> {
        if !pgferry_runtime::install::is_current(&client, &crate::SCHEMA).await? {
            return Err(Error::NotInstalled);
        }
        // Before anything is guarded: a source this database took over
        // from must not get its tables guarded again.
        let epoch = hello.epoch.max(1);
        if let Some(recorded) = recorded(&client, &hello.source_id).await?
            && recorded.epoch > epoch
        {
            return Err(Error::EpochBehind {
                source_id: hello.source_id.clone(),
                source_epoch: epoch,
                recorded: recorded.epoch,
                last_batch: recorded.last_applied_batch,
                last_cut: recorded.last_applied_cut,
            });
        }
        let applier: String = client
            .query_one("select session_user::text", &[])
            .await
            .map_err(Error::db("reading the applier role"))?
            .get(0);
        // COPY data arrives in these text forms (see the source's copy).
        // Batches commit asynchronously, as native subscriptions do: the
        // source deletes a batch only once `durable` says it is on disk.
        // Every apply statement finds rows by key: no sequential scan and
        // no hash or merge join, even where statistics from when the table
        // was empty make one look cheap (the batch may have filled the
        // table since).
        client
            .batch_execute(
                "set datestyle = 'ISO, MDY'; set intervalstyle = 'postgres';
                 set synchronous_commit = off; set enable_seqscan = off;
                 set enable_hashjoin = off; set enable_mergejoin = off",
            )
            .await
            .map_err(Error::db("setting up the applier session"))?;
        let merge: bool = client
            .query_one(
                "select current_setting('server_version_num')::int >= 150000",
                &[],
            )
            .await
            .map_err(Error::db("reading the server version"))?
            .get(0);
        let mut plans = HashMap::new();
        let mut forms = Vec::with_capacity(hello.tables.len());
        for table in &hello.tables {
            let (form, plan) = matching_form(&client, &hello.source_id, table, merge).await?;
            guard::ensure(&client, plan.guarded(), &applier).await?;
            plans.insert(table.table_id, plan);
            forms.push(form);
        }
        let guarded: Vec<_> = plans.values().map(TablePlan::guarded).collect();
        guard::track(&client, &hello.source_id, &guarded).await?;
        let named: Vec<_> = hello
            .tables
            .iter()
            .map(|table| guard::SourceName {
                guarded: plans[&table.table_id].guarded(),
                schema: &table.source_schema,
                table: &table.source_table,
                key_columns: &table.key_columns,
            })
            .collect();
        guard::name_sources(&client, &hello.source_id, &named).await?;
        let mut sequences = HashMap::new();
        for sequence in &hello.sequences {
            let table = plans.get(&sequence.table_id);
            sequences.insert(
                sequence.seq_id,
                schema::check_sequence(&client, sequence, table).await?,
            );
        }
        // A higher epoch is a new source's stream after a take-over
        // there: it starts at its batch 0, from what this database holds.
        let restarted = client
            .execute(
                "insert into pgferry.progress (source_id, epoch) values ($1, $2)
                 on conflict (source_id) do update
                   set last_batch = 0, last_cut = null, applied_at = null, epoch = excluded.epoch
                   where progress.epoch < excluded.epoch",
                &[&hello.source_id, &(epoch as i64)],
            )
            .await
            .map_err(Error::db("registering the source"))?;
        if restarted > 0 {
            tracing::info!(source_id = %hello.source_id, epoch, "a new source, or one at a new epoch: its stream starts at batch 0");
        }
        let progress = client
            .query_one(
                "select last_batch, coalesce(last_cut, '') from pgferry.progress
                 where source_id = $1",
                &[&hello.source_id],
            )
            .await
            .map_err(Error::db("reading progress"))?;
        let (last, last_cut): (i64, String) = (progress.get(0), progress.get(1));
        let can_take_over = crate::take_over::possible(&client).await?;
        let source_id = hello.source_id.clone();
        Ok(Applier {
            txn: Transaction::new(client, (source_id.clone(), epoch), retries, compact_window),
            tables: Tables::new(source_id, merge, plans, forms, sequences),
            copy: Copier::default(),
            joiner: Default::default(),
            last_applied: last as u64,
            last_cut,
            epoch,
            can_take_over,
            switched: false,
        })
    }
}

/// What this target records for `source_id` (its epoch, last batch and
/// that batch's cut), as a Ready says it; `None` for a source never seen.
pub async fn recorded(client: &Client, source_id: &str) -> Result<Option<wire::Ready>> {
    Ok(client
        .query_opt(
            "select epoch, last_batch, coalesce(last_cut, '') from pgferry.progress
             where source_id = $1",
            &[&source_id],
        )
        .await
        .map_err(Error::db("reading progress"))?
        .map(|row| wire::Ready {
            epoch: row.get::<_, i64>(0) as u64,
            last_applied_batch: row.get::<_, i64>(1) as u64,
            last_applied_cut: row.get(2),
            can_take_over: false,
        }))
}

/// The form of `table` its target table has, and its plan: the announced
/// one, else the newest earlier form it matches (the target has not yet
/// applied the schema changes since, which come in the stream), else, for
/// a table `source_id` already replicates that is being copied again, the
/// table as it is (the copy brings it to the copy's columns). When none
/// matches, the announced form's error.
async fn matching_form(
    client: &Client,
    source_id: &str,
    table: &wire::TableSchema,
    merge: bool,
) -> Result<(wire::TableSchema, TablePlan)> {
    let error = match schema::check(client, table, merge).await {
        Ok(plan) => return Ok((table.clone(), plan)),
        Err(error @ (Error::ColumnMismatch { .. } | Error::UnknownTable { .. }))
            if !table.earlier_forms.is_empty() || table.copy_pending =>
        {
            error
        }
        Err(error) => return Err(error),
    };
    for form in table.earlier_forms.iter().rev() {
        if let Ok(plan) = schema::check(client, form, merge).await {
            tracing::info!(
                table = %plan.name,
                "the target table has an earlier form: schema changes queued since reach it in the stream"
            );
            return Ok((form.clone(), plan));
        }
    }
    if table.copy_pending
        && let Error::ColumnMismatch { .. } = error
        && guard::replicates(client, source_id, &table.target_schema, &table.target_table).await?
    {
        let mut form = table.clone();
        let quoted = pgferry_runtime::sql::qualified(&table.target_schema, &table.target_table);
        let present = schema::column_types(client, &quoted).await?;
        form.columns.retain(|c| present.contains_key(&c.name));
        for column in &mut form.columns {
            column.sql_type.clone_from(&present[&column.name]);
        }
        let plan = schema::check(client, &form, merge).await?;
        tracing::info!(table = %plan.name, "the target table differs from the source's: the copy under way brings it to the source's columns");
        return Ok((form, plan));
    }
    Err(error)
}
