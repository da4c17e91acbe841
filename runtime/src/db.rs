//! Connections to PostgreSQL and the one place that decides which database
//! errors are worth retrying.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{ConfigError, Identity};
use crate::recovery::Recovery;

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

/// The TLS of this process's database sessions (see [`trust`]).
static TLS: OnceLock<MakeRustlsConnect> = OnceLock::new();

/// An agent's TLS files for its database: the CA file, and the client
/// certificate and key, with the names of their settings.
pub struct DatabaseTls<'a> {
    /// The settings' names: CA, certificate, key.
    pub settings: [&'static str; 3],
    /// The CA file.
    pub ca: Option<&'a Path>,
    /// The client certificate file.
    pub cert: Option<&'a Path>,
    /// The client key file.
    pub key: Option<&'a Path>,
}

/// Decides, once at start, how this process's database sessions use TLS,
/// as libpq does. With a CA file TLS is
/// required, and the server's certificate must chain to one of the file's
/// certificates and name the CONNINFO's host (libpq's `verify-full`);
/// a CONNINFO with `sslmode=disable` then contradicts it. Without `ca`,
/// `sslmode=prefer` (the default) and `require` encrypt without checking
/// who answers, as libpq does without a root certificate, and `disable`
/// does not encrypt. With a certificate and key the sessions present that client
/// certificate (libpq's `sslcert` and `sslkey`: the server's `cert`
/// authentication or `clientcert=verify-full`), which also needs TLS.
pub fn trust(files: DatabaseTls<'_>, config: &mut Config) -> Result<(), ConfigError> {
    let [ca_setting, cert_setting, key_setting] = files.settings;
    let identity = match (files.cert, files.key) {
        (Some(cert), Some(key)) => Some(crate::config::read_identity(
            (cert_setting, cert),
            (key_setting, key),
        )?),
        (None, None) => None,
        (None, Some(_)) | (Some(_), None) => {
            return Err(ConfigError::Invalid {
                setting: cert_setting,
                reason: format!("--{cert_setting} and --{key_setting} go together"),
            });
        }
    };
    let tls = client_config(ca_setting, files.ca, identity, config)?;
    // A second call (none is made) would change nothing.
    let _ = TLS.set(MakeRustlsConnect::new(tls));
    Ok(())
}

/// The TLS settings [`trust`] describes.
fn client_config(
    setting: &'static str,
    ca: Option<&Path>,
    identity: Option<Identity>,
    config: &mut Config,
) -> Result<ClientConfig, ConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let invalid = |reason: String| ConfigError::Invalid { setting, reason };
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|err| invalid(err.to_string()))?;
    let tls = match ca {
        Some(path) => {
            if config.get_ssl_mode() == SslMode::Disable {
                return Err(invalid(
                    "the database's CONNINFO says sslmode=disable: a CA needs TLS".into(),
                ));
            }
            config.ssl_mode(SslMode::Require);
            builder.with_root_certificates(crate::config::read_roots(setting, path)?)
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider))),
    };
    let Some(identity) = identity else {
        return Ok(tls.with_no_client_auth());
    };
    let invalid = |reason: String| ConfigError::Invalid {
        setting: identity.cert_setting,
        reason,
    };
    if config.get_ssl_mode() == SslMode::Disable {
        return Err(invalid(
            "the database's CONNINFO says sslmode=disable: a client certificate needs TLS".into(),
        ));
    }
    config.ssl_mode(SslMode::Require);
    tls.with_client_auth_cert(identity.chain, identity.key)
        .map_err(|err| invalid(format!("not a usable certificate and key: {err}")))
}

/// Trusts whichever certificate the server shows, as libpq's `require`
/// does without a root certificate: the session is encrypted against
/// eavesdropping, not proven to reach the right server. The handshake's
/// signatures are still checked, so the session's keys are the
/// certificate's.
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Opens a session and drives its connection on a background task.
pub async fn connect(config: &Config) -> Result<Client, tokio_postgres::Error> {
    // A process that did not call trust() gets libpq's default.
    let tls = TLS.get_or_init(|| {
        let tls = client_config("database TLS", None, None, &mut Config::new())
            .expect("ring supports TLS 1.2 and 1.3");
        MakeRustlsConnect::new(tls)
    });
    let (client, connection) = config.connect(tls.clone()).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(error = %error, "database connection ended");
        }
    });
    Ok(client)
}

/// What an operation that failed with `err` needs before it can succeed:
/// see [`recovery_of`].
pub fn recovery(err: &tokio_postgres::Error) -> Recovery {
    recovery_of(err.code())
}

/// What a database error of SQLSTATE `code` (none: the connection broke or
/// never opened) needs. Lost connections, shutdowns, lack of resources,
/// serialization failures and deadlocks pass: try again. Everything else
/// (constraint violations, missing objects, bad SQL, privileges, failed
/// authentication) stays until a person acts.
pub fn recovery_of(code: Option<&SqlState>) -> Recovery {
    let Some(code) = code else {
        return Recovery::Retry;
    };
    let class = &code.code()[..2];
    if matches!(class, "08" | "53" | "57" | "58")
        || *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
    {
        Recovery::Retry
    } else {
        Recovery::Operator
    }
}

/// [`describe`], with the key the server names for a unique, exclusion or
/// foreign key violation (its detail `Key (u)=(2) already exists.`): the
/// one value an operator needs to find the row; other details can hold a
/// whole row and are left out.
pub fn describe_with_key(err: &tokio_postgres::Error) -> String {
    match err.as_db_error().and_then(|db| db.detail()) {
        Some(detail) if detail.starts_with("Key (") => format!("{}: {detail}", describe(err)),
        _ => describe(err),
    }
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
    fn sqlstates_that_pass_are_retried_and_the_rest_need_an_operator() {
        for passing in [
            SqlState::CONNECTION_FAILURE,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::QUERY_CANCELED,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::DISK_FULL,
            SqlState::IO_ERROR,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
        ] {
            assert_eq!(recovery_of(Some(&passing)), Recovery::Retry, "{passing:?}");
        }
        assert_eq!(recovery_of(None), Recovery::Retry, "a broken connection");
        for lasting in [
            SqlState::UNIQUE_VIOLATION,
            SqlState::NOT_NULL_VIOLATION,
            SqlState::UNDEFINED_TABLE,
            SqlState::UNDEFINED_COLUMN,
            SqlState::SYNTAX_ERROR,
            SqlState::INSUFFICIENT_PRIVILEGE,
            SqlState::INVALID_PASSWORD,
            SqlState::READ_ONLY_SQL_TRANSACTION,
            SqlState::LOCK_NOT_AVAILABLE,
        ] {
            assert_eq!(
                recovery_of(Some(&lasting)),
                Recovery::Operator,
                "{lasting:?}"
            );
        }
    }

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
