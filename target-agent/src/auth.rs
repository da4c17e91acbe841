//! Who may replicate. Every stream is admitted before its hello is read: it
//! must present the `--auth-token-file` token, when one is set, and with
//! `--tls-client-ca` it came over a connection whose client certificate the
//! handshake (see [`crate::tls`]) has already checked. The certificate then
//! also decides which source ids the peer may use, so one source's
//! credentials cannot write as another source.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::UnixTime;
use subtle::ConstantTimeEq;
use tonic::Request;
use x509_parser::extensions::GeneralName;

use crate::error::{Error, Result};
use crate::metrics;

/// The metadata key that carries the token.
pub const AUTHORIZATION: &str = "authorization";

/// What a peer must show.
#[derive(Default)]
pub struct Gate {
    /// The bearer token sources must present, if one is set.
    pub token: Option<String>,
    /// With `--tls-client-ca`: the check that a client certificate comes
    /// from that authority. Sources must then present one, and it names
    /// the source ids they may use.
    pub client_ca: Option<Arc<dyn ClientCertVerifier>>,
}

/// A peer the gate let in.
#[derive(Debug)]
pub struct Admitted {
    /// Where it connected from, for logs.
    pub peer: Option<SocketAddr>,
    /// The source ids its certificate names; `None` without client
    /// certificates, when any source id is accepted.
    source_ids: Option<Vec<String>>,
}

impl Gate {
    /// Checks the token and reads the certificate's source ids. A refusal
    /// is logged with the peer's address (never the token) and counted.
    pub fn admit<T>(&self, request: &Request<T>) -> Result<Admitted> {
        let peer = request.remote_addr();
        if let Some(token) = &self.token {
            let presented = request
                .metadata()
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default();
            // In constant time: how far a guess matched must not show in
            // how long it took to refuse it.
            if !bool::from(presented.as_bytes().ct_eq(token.as_bytes())) {
                refused(peer, "token");
                return Err(Error::Unauthenticated);
            }
        }
        let source_ids = match &self.client_ca {
            Some(client_ca) => Some(
                certified_source_ids(client_ca.as_ref(), request)
                    .inspect_err(|_| refused(peer, "certificate"))?,
            ),
            None => None,
        };
        Ok(Admitted { peer, source_ids })
    }
}

impl Admitted {
    /// Whether the peer may replicate as `source_id`.
    pub fn check_source_id(&self, source_id: &str) -> Result<()> {
        match &self.source_ids {
            Some(names) if !names.iter().any(|name| name == source_id) => {
                refused(self.peer, "source_id");
                Err(Error::Certificate(format!(
                    "source id {source_id:?} is not one the client certificate names ({})",
                    names.join(", ")
                )))
            }
            _ => Ok(()),
        }
    }
}

/// The source ids the peer's client certificate names, once `client_ca`
/// has checked its chain.
fn certified_source_ids<T>(
    client_ca: &dyn ClientCertVerifier,
    request: &Request<T>,
) -> Result<Vec<String>> {
    let chain = request.peer_certs().filter(|chain| !chain.is_empty()).ok_or_else(|| {
        Error::Certificate(
            "none presented: this target requires one signed by its --tls-client-ca (source-agent --tls-cert/--tls-key)".into(),
        )
    })?;
    client_ca
        .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
        .map_err(|err| {
            Error::Certificate(format!(
                "not accepted by this target's --tls-client-ca: {err}"
            ))
        })?;
    let names = source_ids(chain[0].as_ref());
    if names.is_empty() {
        return Err(Error::Certificate(
            "it names no source id (no DNS subject alternative name or common name)".into(),
        ));
    }
    Ok(names)
}

/// The source ids a certificate (DER) names: its DNS subject alternative
/// names, or, when it has none, its subject's common names.
pub fn source_ids(der: &[u8]) -> Vec<String> {
    let Ok((_, certificate)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let dns: Vec<String> = match certificate.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(name) => Some((*name).to_owned()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if !dns.is_empty() {
        return dns;
    }
    certificate
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect()
}

/// Logs and counts a refused peer.
fn refused(peer: Option<SocketAddr>, reason: &'static str) {
    metrics::peer_refused(reason);
    tracing::warn!(peer = ?peer, reason, "refused a peer");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(names: &[&str], common_name: &str) -> Vec<u8> {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_certificate_names_its_dns_alternative_names_or_else_its_common_name() {
        assert_eq!(
            source_ids(&certificate(&["dc1", "dc1-standby"], "ignored")),
            ["dc1", "dc1-standby"]
        );
        assert_eq!(source_ids(&certificate(&[], "dc2")), ["dc2"]);
        assert!(source_ids(b"not a certificate").is_empty());
    }
}
