//! Versioned install of pgferry's schema on either side: scripts numbered
//! from 1, the database records the newest it ran, and `install` runs only
//! the newer ones, in one transaction, so it upgrades in place and a second
//! run changes nothing.

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

/// Runs the scripts of `migrations` (version, SQL) newer than the database's
/// in one transaction. Returns the version before and after.
pub async fn install(
    client: &mut Client,
    migrations: &[(i32, &str)],
) -> Result<(i32, i32), InstallError> {
    let tx = client.transaction().await?;
    tx.batch_execute(
        "create schema if not exists pgferry;
         create table if not exists pgferry.schema_version (version int not null);
         lock table pgferry.schema_version in exclusive mode;",
    )
    .await?;
    let before: i32 = tx
        .query_one(
            "select coalesce(max(version), 0) from pgferry.schema_version",
            &[],
        )
        .await?
        .get(0);
    let newest = migrations.last().map_or(0, |m| m.0);
    if before > newest {
        return Err(InstallError::TooNew {
            found: before,
            known: newest,
        });
    }
    for (version, script) in migrations.iter().filter(|m| m.0 > before) {
        tx.batch_execute(script).await?;
        tracing::info!(version, "applied schema script");
    }
    tx.execute("delete from pgferry.schema_version", &[])
        .await?;
    tx.execute("insert into pgferry.schema_version values ($1)", &[&newest])
        .await?;
    tx.commit().await?;
    Ok((before, newest))
}

/// Whether `install` has run in this database: false when it never has; an
/// error when it ran with older or newer scripts than `migrations`.
pub async fn is_current(client: &Client, migrations: &[(i32, &str)]) -> Result<bool, InstallError> {
    let installed: bool = client
        .query_one(
            "select to_regclass('pgferry.schema_version') is not null",
            &[],
        )
        .await?
        .get(0);
    let found: Option<i32> = if installed {
        client
            .query_one("select max(version) from pgferry.schema_version", &[])
            .await?
            .get(0)
    } else {
        None
    };
    let known = migrations.last().map_or(0, |m| m.0);
    match found {
        None => Ok(false),
        Some(found) if found < known => Err(InstallError::Outdated { found, known }),
        Some(found) if found > known => Err(InstallError::TooNew { found, known }),
        Some(_) => Ok(true),
    }
}
