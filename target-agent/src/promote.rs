//! `target-agent promote` (docs/reference.md, "Failover"): the source is
//! lost, and this database becomes the source of its tables at the last
//! batch applied from it, with no final batch. In one transaction on the
//! applier's role: the source's progress row locked (a batch being applied
//! finishes first, and any later one is refused by the epoch), the source
//! role taken (`crate::take_over`), and the source's epoch raised, so that
//! the old source is refused from then on. What the old source committed
//! after that batch never reached here; `source-agent rejoin` on it writes
//! those transactions out and makes it this database's target.

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::guard::Guarded;
use crate::take_over::{self, Reverse, Taken};

/// A promotion done.
#[derive(Debug)]
pub struct Promoted {
    /// The source taken over from.
    pub source_id: String,
    /// The last batch applied from it: this database holds the source as
    /// that batch's snapshot showed it.
    pub last_batch: u64,
    /// That batch's cut.
    pub last_cut: String,
    /// The new epoch.
    pub epoch: u64,
    /// The tables now replicated from here.
    pub tables: usize,
}

/// Promotes this database to the source of `source_id`'s tables (the only
/// source when `None`), recording a target for it at `reverse`.
pub async fn promote(
    client: &mut Client,
    source_id: Option<&str>,
    reverse: &Reverse<'_>,
) -> Result<Promoted> {
    if !pgferry_runtime::install::is_current(client, &crate::SCHEMA).await? {
        return Err(Error::NotInstalled);
    }
    let tx = client.transaction().await.map_err(Error::db("promoting"))?;
    let sources: Vec<String> = tx
        .query(
            "select source_id from pgferry.progress
             where $1::text is null or source_id = $1 order by source_id",
            &[&source_id],
        )
        .await
        .map_err(Error::db("reading the sources"))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let source_id = match (source_id, sources.as_slice()) {
        (_, [only]) => only.clone(),
        (Some(named), []) => {
            return Err(Error::Promote(format!("no source {named} replicates here")));
        }
        (None, []) => return Err(Error::Promote("no source replicates here".into())),
        (None, _) => {
            return Err(Error::Promote(format!(
                "several sources replicate here ({}): name one with --source-id",
                sources.join(", ")
            )));
        }
        (Some(_), _) => unreachable!("a source id names one row"),
    };
    // Waits for the batch being applied, if any: it commits or rolls back
    // whole, and every later one finds the epoch raised.
    let row = tx
        .query_one(
            "select epoch, last_batch, coalesce(last_cut, '') from pgferry.progress
             where source_id = $1 for update",
            &[&source_id],
        )
        .await
        .map_err(Error::db("locking the source's progress"))?;
    let epoch = row.get::<_, i64>(0) as u64 + 1;
    let (last_batch, last_cut) = (row.get::<_, i64>(1) as u64, row.get::<_, String>(2));
    let rows = tx
        .query(
            "select table_schema, table_name, quote_ident(table_schema) || '.' || quote_ident(table_name),
                    table_schema || '.' || table_name, source_schema, source_table, key_columns
             from pgferry.guarded where source_id = $1 order by 1, 2",
            &[&source_id],
        )
        .await
        .map_err(Error::db("reading the source's tables"))?;
    let named: Vec<Recorded> = rows
        .iter()
        .map(|row| Recorded {
            schema: row.get(0),
            table: row.get(1),
            quoted: row.get(2),
            name: row.get(3),
            source_schema: row.get(4),
            source_table: row.get(5),
            key_columns: row.get(6),
        })
        .collect();
    let mut tables = Vec::with_capacity(named.len());
    for recorded in &named {
        let (Some(source_schema), Some(source_table), Some(key_columns)) = (
            &recorded.source_schema,
            &recorded.source_table,
            &recorded.key_columns,
        ) else {
            return Err(Error::Promote(format!(
                "table {}: its name on source {source_id} is not recorded (the source has not connected since this version)",
                recorded.name
            )));
        };
        tables.push(Taken {
            guarded: Guarded {
                schema: &recorded.schema,
                table: &recorded.table,
                quoted: &recorded.quoted,
                name: &recorded.name,
            },
            key_columns,
            source_schema,
            source_table,
        });
    }
    if tables.is_empty() {
        return Err(Error::Promote(format!(
            "source {source_id} replicates no table here"
        )));
    }
    take_over::take_over(&tx, &source_id, reverse, epoch, &tables).await?;
    tx.execute(
        "update pgferry.progress set epoch = $2 where source_id = $1",
        &[&source_id, &(epoch as i64)],
    )
    .await
    .map_err(Error::db("raising the source's epoch"))?;
    tx.commit().await.map_err(Error::db("promoting"))?;
    Ok(Promoted {
        source_id,
        last_batch,
        last_cut,
        epoch,
        tables: tables.len(),
    })
}

/// A table guarded for the source, as `pgferry.guarded` records it.
struct Recorded {
    schema: String,
    table: String,
    quoted: String,
    name: String,
    source_schema: Option<String>,
    source_table: Option<String>,
    key_columns: Option<Vec<String>>,
}
