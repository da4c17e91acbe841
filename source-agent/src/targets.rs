//! Named targets: the target agent `add-target` records (its address and
//! the paths of its TLS and token files, never their contents), which `run`
//! streams to when no `--target` is given. One target per source database
//! for now; several are issue 17.

use std::path::{Path, PathBuf};

use pgferry_runtime::config::ConfigError;
use tokio_postgres::Client;

use crate::cli::RunArgs;
use crate::error::{Error, Result};

/// Where a target agent listens and what the link to it needs.
#[derive(Debug, Clone)]
pub struct Target {
    /// http://HOST:PORT, or https://HOST:PORT with `tls_ca`.
    pub address: String,
    /// The CA its certificate must come from.
    pub tls_ca: Option<PathBuf>,
    /// The client certificate to present.
    pub tls_cert: Option<PathBuf>,
    /// Its private key.
    pub tls_key: Option<PathBuf>,
    /// The file holding the token to present.
    pub auth_token_file: Option<PathBuf>,
}

impl Target {
    /// The target `run`'s flags name, if `--target` is given.
    pub fn from_args(args: &RunArgs) -> Option<Target> {
        Some(Target {
            address: args.target.clone()?,
            tls_ca: args.tls_ca.clone(),
            tls_cert: args.tls_cert.clone(),
            tls_key: args.tls_key.clone(),
            auth_token_file: args.auth_token_file.clone(),
        })
    }

    /// The token it wants, read from its file and checked to fit a header.
    pub fn token(&self) -> Result<Option<String>> {
        let token = pgferry_runtime::config::read_optional_secret(
            "auth-token-file",
            self.auth_token_file.as_deref(),
        )?;
        if let Some(token) = &token
            && tonic::metadata::MetadataValue::try_from(format!("Bearer {token}")).is_err()
        {
            return Err(Error::BadToken);
        }
        Ok(token)
    }
}

/// Records target `name`, after checking that its address parses, its TLS
/// files hold what they should and its token fits, with the files' paths
/// made absolute (the agent may run from another directory).
pub async fn add(client: &Client, name: &str, target: &Target) -> Result<()> {
    crate::channel::endpoint(target)?;
    target.token()?;
    let (ca, cert, key, token) = (
        absolute("tls-ca", target.tls_ca.as_deref())?,
        absolute("tls-cert", target.tls_cert.as_deref())?,
        absolute("tls-key", target.tls_key.as_deref())?,
        absolute("auth-token-file", target.auth_token_file.as_deref())?,
    );
    if let Some(existing) = stored(client).await?.map(|(existing, _)| existing) {
        return Err(if existing == name {
            Error::TargetExists(existing)
        } else {
            Error::OneTarget { existing }
        });
    }
    client
        .execute(
            "insert into pgferry.targets (name, address, tls_ca, tls_cert, tls_key, auth_token_file)
             values ($1, $2, $3, $4, $5, $6)",
            &[&name, &target.address, &ca, &cert, &key, &token],
        )
        .await
        .map_err(Error::db("recording the target"))?;
    Ok(())
}

/// Forgets target `name`.
pub async fn remove(client: &Client, name: &str) -> Result<()> {
    let removed = client
        .execute("delete from pgferry.targets where name = $1", &[&name])
        .await
        .map_err(Error::db("removing the target"))?;
    if removed == 0 {
        return Err(Error::UnknownTarget(name.to_owned()));
    }
    Ok(())
}

/// The recorded target and its name, if any.
pub async fn stored(client: &Client) -> Result<Option<(String, Target)>> {
    let row = client
        .query_opt(
            "select name, address, tls_ca, tls_cert, tls_key, auth_token_file
             from pgferry.targets order by target_id limit 1",
            &[],
        )
        .await
        .map_err(Error::db("reading the target"))?;
    Ok(row.map(|row| {
        let path = |i: usize| row.get::<_, Option<String>>(i).map(PathBuf::from);
        (
            row.get(0),
            Target {
                address: row.get(1),
                tls_ca: path(2),
                tls_cert: path(3),
                tls_key: path(4),
                auth_token_file: path(5),
            },
        )
    }))
}

/// The target `run` streams to: its flags', or else the recorded one.
pub async fn for_run(client: &Client, args: &RunArgs) -> Result<Target> {
    if let Some(target) = Target::from_args(args) {
        return Ok(target);
    }
    match stored(client).await? {
        Some((name, target)) => {
            tracing::info!(target = %name, address = %target.address, "streaming to the recorded target");
            Ok(target)
        }
        None => Err(ConfigError::Invalid {
            setting: "target",
            reason: "no --target given and no target recorded (source-agent add-target)".into(),
        }
        .into()),
    }
}

/// `path` made absolute, for an agent that may run from another directory.
fn absolute(setting: &'static str, path: Option<&Path>) -> Result<Option<String>> {
    let Some(path) = path else {
        return Ok(None);
    };
    std::fs::canonicalize(path)
        .map(|path| Some(path.display().to_string()))
        .map_err(|err| {
            ConfigError::Invalid {
                setting,
                reason: format!("{}: {err}", path.display()),
            }
            .into()
        })
}
