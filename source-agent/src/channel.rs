//! The channel to a target agent: its address, TLS trust, client
//! certificate and token from the settings, checked before the first
//! connection.

use std::path::PathBuf;
use std::time::Duration;

use pgferry_runtime::config::ConfigError;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::error::{Error, Result};

/// How to reach a target agent: where it listens, and the TLS trust,
/// client certificate and token a connection to it needs.
#[derive(Debug, Clone)]
pub struct Dial {
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

impl Dial {
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

/// The target agent's endpoint from its address and TLS files: https
/// trusts the certificates in the CA file alone, and needs one.
pub fn endpoint(target: &Dial) -> Result<Endpoint> {
    let endpoint = Endpoint::from_shared(target.address.clone())
        .map_err(|_| Error::BadTarget(target.address.clone()))?;
    let tls_ca = |reason: String| ConfigError::Invalid {
        setting: "tls-ca",
        reason,
    };
    let endpoint = match (target.address.starts_with("https://"), &target.tls_ca) {
        (true, Some(path)) => {
            let (pem, _) = pgferry_runtime::config::read_ca("tls-ca", path)?;
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
            if let (Some(cert), Some(key)) = (&target.tls_cert, &target.tls_key) {
                tls = tls.identity(client_identity(cert, key)?);
            }
            endpoint
                .tls_config(tls)
                .map_err(|err| tls_ca(pgferry_runtime::causes(&err)))?
        }
        (false, None) if target.tls_cert.is_some() => {
            return Err(ConfigError::Invalid {
                setting: "tls-cert",
                reason: format!(
                    "the target address {} is not https: a client certificate needs TLS",
                    target.address
                ),
            }
            .into());
        }
        (false, None) => endpoint,
        (true, None) => {
            return Err(tls_ca(format!(
                "the target address {} is https: give the CA to trust",
                target.address
            ))
            .into());
        }
        (false, Some(_)) => {
            return Err(tls_ca(format!(
                "the target address {} is not https",
                target.address
            ))
            .into());
        }
    };
    Ok(endpoint
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .initial_stream_window_size(pgferry_runtime::HTTP2_WINDOW)
        .initial_connection_window_size(pgferry_runtime::HTTP2_WINDOW * 2)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(20)))
}

/// The client certificate and key of `--tls-cert` / `--tls-key`, checked
/// here because the TLS library reads them only when it connects.
fn client_identity(cert: &std::path::Path, key: &std::path::Path) -> Result<Identity> {
    let identity = pgferry_runtime::config::read_identity(("tls-cert", cert), ("tls-key", key))?;
    Ok(Identity::from_pem(identity.cert_pem, identity.key_pem))
}

/// Presents `token` (the target's, from its file) on `request` as a bearer
/// token.
pub fn authorize<T>(request: &mut tonic::Request<T>, token: Option<&str>) -> Result<()> {
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| Error::BadToken)?;
        request.metadata_mut().insert("authorization", value);
    }
    Ok(())
}
