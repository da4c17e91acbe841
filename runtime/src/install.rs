//! Versioned install of pgferry's schema on either side, in one transaction.
//! Migrations change tables: numbered from 1, never edited once released,
//! the database records the newest it ran and `install` runs only the newer
//! ones. Functions have one live body each, in a file of its own, and every
//! `install` creates or replaces them all after the migrations; a function
//! whose arguments or result type change needs a migration that drops the
//! old one first. So an install upgrades in place, and a second run changes
//! nothing. The two sides' objects have different names, so one database
//! may hold both (the two datacenters' roles swap): each side records its
//! own version.

use tokio_postgres::Client;

/// Why an install did not happen.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A script or bookkeeping statement failed; nothing was changed.
    #[error("{}", crate::db::describe(.0))]
    Db(#[from] tokio_postgres::Error),
    /// The database is newer than this binary.
    #[error("schema version {found} is newer than this binary's {known}")]
    TooNew {
        /// Version found in the database.
        found: i32,
        /// Newest version this binary has.
        known: i32,
    },
    /// The database's schema predates this binary: `install` upgrades it.
    #[error(
        "schema version {found} is older than this binary's {known}: run `install` to upgrade it"
    )]
    Outdated {
        /// Version found in the database.
        found: i32,
        /// Newest version this binary has.
        known: i32,
    },
}

/// Which agent's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The source agent's: capture, queue, batches.
    Source,
    /// The target agent's: progress, guard.
    Target,
}

impl Side {
    /// The side's name in `pgferry.schema_version`.
    pub fn name(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Target => "target",
        }
    }
}

/// Gives a version recorded before the sides could share a database (no
/// `side` column) to the side whose tables are there: the source's queue
/// or the target's progress.
const SIDES_APART: &str = "
    alter table pgferry.schema_version add column if not exists side text;
    update pgferry.schema_version
       set side = case when to_regclass('pgferry.queue') is not null then 'source' else 'target' end
     where side is null;";

/// One side's schema.
pub struct Schema<'a> {
    /// Whose it is.
    pub side: Side,
    /// Migrations (version, SQL) in order.
    pub migrations: &'a [(i32, &'a str)],
    /// Every function's `create or replace`, in an order in which each finds
    /// what it refers to.
    pub functions: &'a [&'a str],
    /// Run last, when the install changed a migration or a function: what
    /// must follow them (the source re-creates its capture triggers).
    pub after_change: &'a str,
}

/// The digest of every function in schema pgferry, to tell whether the
/// install changed one.
const FUNCTIONS_DIGEST: &str = "select coalesce(md5(string_agg(pg_get_functiondef(p.oid), '' order by p.oid::regprocedure::text)), '')
     from pg_proc p where p.pronamespace = 'pgferry'::regnamespace";

/// Runs the migrations newer than the database's, then every function, in
/// one transaction. Returns the version before and after.
pub async fn install(client: &mut Client, schema: &Schema<'_>) -> Result<(i32, i32), InstallError> {
    let tx = client.transaction().await?;
    tx.batch_execute(
        "create schema if not exists pgferry;
         create table if not exists pgferry.schema_version (version int not null);
         lock table pgferry.schema_version in exclusive mode;",
    )
    .await?;
    tx.batch_execute(SIDES_APART).await?;
    let side = schema.side.name();
    let before: i32 = tx
        .query_one(
            "select coalesce(max(version), 0) from pgferry.schema_version where side = $1",
            &[&side],
        )
        .await?
        .get(0);
    let newest = schema.migrations.last().map_or(0, |m| m.0);
    if before > newest {
        return Err(InstallError::TooNew {
            found: before,
            known: newest,
        });
    }
    let digest_before: String = tx.query_one(FUNCTIONS_DIGEST, &[]).await?.get(0);
    for (version, script) in schema.migrations.iter().filter(|m| m.0 > before) {
        tx.batch_execute(script).await?;
        tracing::info!(version, "applied schema script");
    }
    for function in schema.functions {
        tx.batch_execute(function).await?;
    }
    let digest_after: String = tx.query_one(FUNCTIONS_DIGEST, &[]).await?.get(0);
    if before != newest || digest_before != digest_after {
        tx.batch_execute(schema.after_change).await?;
    }
    tx.execute(
        "delete from pgferry.schema_version where side = $1",
        &[&side],
    )
    .await?;
    tx.execute(
        "insert into pgferry.schema_version (version, side) values ($1, $2)",
        &[&newest, &side],
    )
    .await?;
    tx.commit().await?;
    Ok((before, newest))
}

/// Whether `install` of `schema` has run in this database: false when it
/// never has; an error when it ran with older or newer scripts.
pub async fn is_current(client: &Client, schema: &Schema<'_>) -> Result<bool, InstallError> {
    // Whether there is a version, and whether it says whose.
    let (installed, sided): (bool, bool) = {
        let row = client
            .query_one(
                "select to_regclass('pgferry.schema_version') is not null,
                        exists (select from pg_attribute
                                where attrelid = to_regclass('pgferry.schema_version')
                                  and attname = 'side' and not attisdropped)",
                &[],
            )
            .await?;
        (row.get(0), row.get(1))
    };
    let side = schema.side.name();
    let found: Option<i32> = match (installed, sided) {
        (false, _) => None,
        (true, true) => client
            .query_one(
                "select max(version) from pgferry.schema_version where side = $1",
                &[&side],
            )
            .await?
            .get(0),
        // Recorded before the sides could share a database: the side whose
        // tables are there.
        (true, false) => client
            .query_one(
                "select max(version) from pgferry.schema_version
                 where (to_regclass('pgferry.queue') is not null) = ($1 = 'source')",
                &[&side],
            )
            .await?
            .get(0),
    };
    let known = schema.migrations.last().map_or(0, |m| m.0);
    match found {
        None => Ok(false),
        Some(found) if found < known => Err(InstallError::Outdated { found, known }),
        Some(found) if found > known => Err(InstallError::TooNew { found, known }),
        Some(_) => Ok(true),
    }
}
