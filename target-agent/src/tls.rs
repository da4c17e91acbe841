//! The replication link's TLS on the target side: the agent's certificate
//! and, with `--tls-client-ca`, the client certificates source agents
//! present. The handshake asks for a client certificate and checks that the
//! peer holds its key; whether `--tls-client-ca` signed it is checked by
//! [`crate::auth`] on every replication stream, so that a refused source is
//! told why in a gRPC status (a failed handshake reaches it only as a TLS
//! alert or a closed connection, depending on timing), and so that health
//! probes and reflection need no certificate. Handshakes run here rather
//! than inside tonic so that a peer refused at the handshake (no TLS at all)
//! is logged with its address and counted, like one refused for its token.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pgferry_runtime::config::{ConfigError, read_identity, read_roots};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics;

/// How long a peer may take over its handshake before it is dropped: a
/// peer that connects and sends nothing holds no more than a socket this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The check of `--tls-client-ca`: whether a client certificate chain
/// comes from that authority.
pub fn client_verifier(path: &Path) -> Result<Arc<dyn ClientCertVerifier>, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        setting: "tls-client-ca",
        reason: format!("{}: {reason}", path.display()),
    };
    let roots = read_roots("tls-client-ca", path)?;
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|err| invalid(err.to_string()))
}

/// The TLS settings of `--tls-cert` and `--tls-key`; with `client_ca` (see
/// [`client_verifier`]) the handshake asks for a client certificate.
pub fn acceptor(
    cert: &Path,
    key: &Path,
    client_ca: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<TlsAcceptor, ConfigError> {
    let invalid = |setting, reason: String| ConfigError::Invalid { setting, reason };
    let identity = read_identity(("tls-cert", cert), ("tls-key", key))?;
    let (chain, key) = (identity.chain, identity.key);
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| invalid("tls-cert", err.to_string()))?;
    let builder = match client_ca {
        Some(verifier) => builder.with_client_cert_verifier(Arc::new(ProofOfKey(verifier))),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|err| {
        invalid(
            "tls-cert",
            format!("not a usable certificate and key: {err}"),
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The handshake's half of `--tls-client-ca`: a client certificate is asked
/// for (naming the authority) but optional, and a peer that sends one must
/// prove it holds its key; the chain itself is checked against the
/// authority by [`crate::auth::Gate`] before a stream is served.
#[derive(Debug)]
struct ProofOfKey(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for ProofOfKey {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The TLS connections of `listener`, handshaken, until `cancel`; the
/// accepting loop and each handshake are `tasks`' (the run's, which
/// shutdown waits for). A failed handshake (a peer that does not speak
/// TLS, or cannot prove it holds its certificate's key) is logged with the
/// peer's address and counted in `pgferry_refused_peers_total{reason="tls"}`.
pub fn incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tasks: &TaskTracker,
    cancel: CancellationToken,
) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = mpsc::channel(16);
    let handshakes = tasks.clone();
    tasks.spawn(async move {
        loop {
            let accepted = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pass on, keep serving.
                    tracing::warn!(error = %error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            handshakes.spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        tx.send(Ok(stream)).await.ok();
                    }
                    Ok(Err(error)) => {
                        metrics::peer_refused("tls");
                        tracing::warn!(peer = %peer, error = %error, "refused a peer at the TLS handshake");
                    }
                    Err(_) => {
                        metrics::peer_refused("tls");
                        tracing::warn!(peer = %peer, "refused a peer that did not finish its TLS handshake");
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
