//! The channel to the target agent: its address, TLS trust and client
//! certificate from the settings, checked before the first connection.

use std::time::Duration;

use pgferry_runtime::config::ConfigError;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::cli::RunArgs;
use crate::error::{Error, Result};

/// The target agent's endpoint from `--target` and `--tls-ca`: https
/// trusts the certificates in the CA file alone, and needs one.
pub fn endpoint(args: &RunArgs) -> Result<Endpoint> {
    let endpoint = Endpoint::from_shared(args.target.clone())
        .map_err(|_| Error::BadTarget(args.target.clone()))?;
    let tls_ca = |reason: String| ConfigError::Invalid {
        setting: "tls-ca",
        reason,
    };
    let endpoint = match (args.target.starts_with("https://"), &args.tls_ca) {
        (true, Some(path)) => {
            let (pem, _) = pgferry_runtime::config::read_ca("tls-ca", path)?;
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
            if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
                tls = tls.identity(client_identity(cert, key)?);
            }
            endpoint
                .tls_config(tls)
                .map_err(|err| tls_ca(pgferry_runtime::causes(&err)))?
        }
        (false, None) if args.tls_cert.is_some() => {
            return Err(ConfigError::Invalid {
                setting: "tls-cert",
                reason: format!(
                    "--target {} is not https: a client certificate needs TLS",
                    args.target
                ),
            }
            .into());
        }
        (false, None) => endpoint,
        (true, None) => {
            return Err(tls_ca(format!(
                "--target {} is https: give the CA to trust",
                args.target
            ))
            .into());
        }
        (false, Some(_)) => {
            return Err(tls_ca(format!("--target {} is not https", args.target)).into());
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
    use rustls_pki_types::pem::PemObject;
    let cert_pem = pgferry_runtime::config::read_file("tls-cert", cert)?;
    let key_pem = pgferry_runtime::config::read_file("tls-key", key)?;
    let invalid = |setting, path: &std::path::Path, reason: String| ConfigError::Invalid {
        setting,
        reason: format!("{}: {reason}", path.display()),
    };
    let certificates = rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|err| invalid("tls-cert", cert, err.to_string()))?;
    if certificates.is_empty() {
        return Err(invalid("tls-cert", cert, "holds no PEM certificate".into()).into());
    }
    rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|err| invalid("tls-key", key, err.to_string()))?;
    Ok(Identity::from_pem(cert_pem, key_pem))
}
