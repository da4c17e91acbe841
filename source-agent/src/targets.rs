//! Named targets: the target agent `add-target` records (its address and
//! the paths of its TLS and token files, never their contents), which `run`
//! streams to when no `--target` is given. A source streams to each of its
//! targets; one installed before targets had names has one, `default`,
//! whose address `run --target` gives.

use std::path::{Path, PathBuf};

use pgferry_runtime::config::ConfigError;
use tokio_postgres::{Client, GenericClient};

use crate::channel::Dial;
use crate::cli::DdlMode;
use crate::error::{Error, Result};

/// A target as recorded in `pgferry.targets`.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Its id, which its batches, tables and sequences carry.
    pub id: i32,
    /// Its name.
    pub name: String,
    /// Where it listens; `None` for the unnamed target of an installation
    /// that `run --target` gives the address of.
    pub target: Option<Dial>,
}

/// Records target `name`, after checking that its address parses, its TLS
/// files hold what they should and its token fits, with the files' paths
/// made absolute (the agent may run from another directory). The unnamed
/// target an installation of one target streams to by `run --target`
/// (`default`, no address) becomes this one, with its tables and progress;
/// otherwise the new target starts from now, with no tables.
pub async fn add(client: &mut Client, name: &str, target: &Dial, ddl: DdlMode) -> Result<()> {
    crate::channel::endpoint(target)?;
    target.token()?;
    let (ca, cert, key, token) = (
        absolute("tls-ca", target.tls_ca.as_deref())?,
        absolute("tls-cert", target.tls_cert.as_deref())?,
        absolute("tls-key", target.tls_key.as_deref())?,
        absolute("auth-token-file", target.auth_token_file.as_deref())?,
    );
    let tx = client
        .transaction()
        .await
        .map_err(Error::db("add-target"))?;
    let taken = tx
        .query_opt("select from pgferry.targets where name = $1", &[&name])
        .await
        .map_err(Error::db("add-target"))?;
    if taken.is_some() {
        return Err(Error::TargetExists(name.to_owned()));
    }
    let named = tx
        .execute(
            "update pgferry.targets
                set name = $1, address = $2, tls_ca = $3, tls_cert = $4, tls_key = $5,
                    auth_token_file = $6, ddl = $7
              where target_id = (select min(target_id) from pgferry.targets where address is null)",
            &[
                &name,
                &target.address,
                &ca,
                &cert,
                &key,
                &token,
                &ddl.as_str(),
            ],
        )
        .await
        .map_err(Error::db("recording the target"))?;
    if named == 0 {
        // Batch 0, the new target's start: changes committed before it
        // are not its (its tables are copied after it).
        tx.execute(
            "with added as (
                 insert into pgferry.targets (name, address, tls_ca, tls_cert, tls_key, auth_token_file, ddl)
                 values ($1, $2, $3, $4, $5, $6, $7) returning target_id
             )
             insert into pgferry.batch (target_id, batch_id, snapshot)
             select target_id, 0, pg_current_snapshot() from added",
            &[&name, &target.address, &ca, &cert, &key, &token, &ddl.as_str()],
        )
        .await
        .map_err(Error::db("recording the target"))?;
    }
    tx.commit().await.map_err(Error::db("add-target"))?;
    Ok(())
}

/// Forgets target `name` with its tables, sequences and batches, and
/// deletes at once the queued changes no other target needs.
pub async fn remove(client: &mut Client, name: &str) -> Result<()> {
    let tx = client
        .transaction()
        .await
        .map_err(Error::db("remove-target"))?;
    // Its tables' capture changes first (attach finds the table by the
    // registrations it is about to lose), then the target goes, and with
    // it, by cascade, its registrations and batches.
    let removed = tx
        .query(
            "with gone as (
                 update pgferry.tables t set removed = true
                 from pgferry.targets g
                 where g.name = $1 and t.target_id = g.target_id
                 returning t.capture_id
             )
             select distinct capture_id from gone",
            &[&name],
        )
        .await
        .map_err(Error::db("remove-target"))?;
    for row in &removed {
        tx.execute("select pgferry.attach($1)", &[&row.get::<_, i32>(0)])
            .await
            .map_err(Error::db("remove-target: changing the capture triggers"))?;
    }
    let deleted = tx
        .execute("delete from pgferry.targets where name = $1", &[&name])
        .await
        .map_err(Error::db("removing the target"))?;
    if deleted == 0 {
        return Err(Error::UnknownTarget(name.to_owned()));
    }
    tx.batch_execute(
        "delete from pgferry.queue q
          where not exists (select from pgferry.tables t where t.capture_id = q.table_id);
         select pgferry.trim_queue(null);",
    )
    .await
    .map_err(Error::db("remove-target: releasing its queued changes"))?;
    tx.commit().await.map_err(Error::db("remove-target"))?;
    Ok(())
}

/// Every recorded target, in the order they were added, but those a
/// switchover made this database's source (see `crate::switchover`).
pub async fn list(client: &impl GenericClient) -> Result<Vec<Recorded>> {
    let rows = client
        .query(
            "select target_id, name, address, tls_ca, tls_cert, tls_key, auth_token_file
             from pgferry.targets t
             where not exists (select from pgferry.switchovers s
                               where s.target_id = t.target_id and s.done_at is not null)
             order by target_id",
            &[],
        )
        .await
        .map_err(Error::db("reading the targets"))?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let path = |i: usize| row.get::<_, Option<String>>(i).map(PathBuf::from);
            Recorded {
                id: row.get(0),
                name: row.get(1),
                target: row.get::<_, Option<String>>(2).map(|address| Dial {
                    address,
                    tls_ca: path(3),
                    tls_cert: path(4),
                    tls_key: path(5),
                    auth_token_file: path(6),
                }),
            }
        })
        .collect())
}

/// The id of the target a table or sequence command names with `--target`,
/// or of the source's only target when it names none.
pub async fn resolve(client: &impl GenericClient, name: Option<&str>) -> Result<i32> {
    let recorded = list(client).await?;
    match name {
        Some(name) => recorded
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.id)
            .ok_or_else(|| Error::UnknownTarget(name.to_owned())),
        None => match recorded.as_slice() {
            [only] => Ok(only.id),
            _ => Err(ConfigError::Invalid {
                setting: "target",
                reason: format!(
                    "this source has {} targets ({}): name one with --target",
                    recorded.len(),
                    names(&recorded)
                ),
            }
            .into()),
        },
    }
}

/// The targets `run` streams to with what each link needs: every recorded
/// one; with `--target` (`flags`), the source's only one at its address.
pub async fn for_run(
    client: &impl GenericClient,
    flags: Option<&Dial>,
) -> Result<Vec<(Recorded, Dial)>> {
    let recorded = list(client).await?;
    if recorded.is_empty() {
        refuse_switched(client).await?;
    }
    if let Some(flags) = flags {
        return match <[Recorded; 1]>::try_from(recorded) {
            Ok([only]) => Ok(vec![(only, flags.clone())]),
            Err(recorded) => Err(ConfigError::Invalid {
                setting: "target",
                reason: format!(
                    "--target gives the address of a source's only target, and this one has {} ({}): leave --target out, run streams to each at its recorded address",
                    recorded.len(),
                    names(&recorded)
                ),
            }
            .into()),
        };
    }
    if recorded.is_empty() {
        return Err(ConfigError::Invalid {
            setting: "target",
            reason: "no --target given and no target recorded (source-agent add-target)".into(),
        }
        .into());
    }
    recorded
        .into_iter()
        .map(|r| match r.target.clone() {
            Some(target) => Ok((r, target)),
            None => Err(ConfigError::Invalid {
                setting: "target",
                reason: format!(
                    "target {} has no address: give --target, or record it with add-target",
                    r.name
                ),
            }
            .into()),
        })
        .collect()
}

/// Refuses `run` on a database every target of which was switched over.
async fn refuse_switched(client: &impl GenericClient) -> Result<()> {
    let switched = client
        .query_one(
            "select string_agg(g.name || ' at epoch ' || s.epoch, ', ' order by g.name),
                    (select epoch from pgferry.epoch)
             from pgferry.switchovers s join pgferry.targets g using (target_id)
             where s.done_at is not null",
            &[],
        )
        .await
        .map_err(Error::db("reading the switchovers"))?;
    match switched.get::<_, Option<String>>(0) {
        Some(targets) => Err(Error::SwitchedOver {
            ours: switched.get(1),
            targets,
        }),
        None => Ok(()),
    }
}

fn names(recorded: &[Recorded]) -> String {
    recorded
        .iter()
        .map(|t| t.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
/// `path` made absolute, for an agent that may run from another directory;
/// symbolic links are kept, not resolved: a mounted Kubernetes secret is a
/// link into a directory that each rotation replaces.
fn absolute(setting: &'static str, path: Option<&Path>) -> Result<Option<String>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let invalid = |err: std::io::Error| -> Error {
        ConfigError::Invalid {
            setting,
            reason: format!("{}: {err}", path.display()),
        }
        .into()
    };
    std::fs::metadata(path).map_err(invalid)?;
    std::path::absolute(path)
        .map(|path| Some(path.display().to_string()))
        .map_err(invalid)
}
