//! Connections to PostgreSQL and the one place that decides which database
//! errors are worth retrying.

use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

/// A CONNINFO (libpq `key=value` string or `postgres://` URL) that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("setting `{setting}`: not a valid connection string: {source}")]
pub struct BadConninfo {
    /// The flag that carried it.
    pub setting: &'static str,
    /// The parser's complaint.
    #[source]
    pub source: tokio_postgres::Error,
}

/// Session settings every agent session runs with (see [`parse_conninfo`]).
const NO_JIT: &str = "-c jit=off";

/// Parses a CONNINFO given as setting `setting`, names the session
/// `application_name` unless the CONNINFO already does, and turns JIT off.
pub fn parse_conninfo(
    setting: &'static str,
    conninfo: &str,
    application_name: &str,
) -> Result<Config, BadConninfo> {
    let mut config: Config = conninfo
        .parse()
        .map_err(|source| BadConninfo { setting, source })?;
    if config.get_application_name().is_none() {
        config.application_name(application_name);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    // The agents' statements are short and run again and again; JIT
    // compiled each one whose estimate was large (a batch read with a big
    // queue: 10 ms of compiling for 0.1 ms of work, every batch).
    let options = match config.get_options() {
        Some(given) => format!("{given} {NO_JIT}"),
        None => NO_JIT.to_owned(),
    };
    config.options(&options);
    Ok(config)
}

/// Opens a session and drives its connection on a background task.
pub async fn connect(config: &Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(error = %error, "database connection ended");
        }
    });
    Ok(client)
}

/// Whether an operation that failed with `err` may succeed if tried again:
/// lost connections, shutdowns, serialization failures and deadlocks, lack
/// of resources. Constraint violations, missing objects, bad SQL and
/// privilege errors need a person.
pub fn is_retryable(err: &tokio_postgres::Error) -> bool {
    let Some(code) = err.code() else {
        // No SQLSTATE: the connection broke or never opened.
        return true;
    };
    let class = &code.code()[..2];
    matches!(class, "08" | "53" | "57" | "58")
        || *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
}

/// A short description of a database error for logs, statuses and `status`:
/// the server's message and SQLSTATE, never the DETAIL (it can hold row values).
pub fn describe(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => match std::error::Error::source(err) {
            Some(source) => format!("{err}: {source}"),
            None => err.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_run_without_jit_and_keep_given_options() {
        let plain = parse_conninfo("source-db", "host=h dbname=d", "app").unwrap();
        assert_eq!(plain.get_options(), Some("-c jit=off"));
        let given = parse_conninfo(
            "source-db",
            "host=h dbname=d options='-c statement_timeout=5s'",
            "app",
        )
        .unwrap();
        assert_eq!(
            given.get_options(),
            Some("-c statement_timeout=5s -c jit=off")
        );
    }
}
