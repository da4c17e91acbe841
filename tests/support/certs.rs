//! Certificates for the TLS tests: a certificate authority that signs the
//! target agent's server certificate and the source agents' client
//! certificates, written as PEM files in a temp dir.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

/// A certificate authority whose files live in `dir`.
pub struct Authority {
    /// Signs the certificates below.
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// Where the PEM files go.
    dir: PathBuf,
    /// The authority's own certificate file.
    pub ca: String,
    /// Its PEM text (what a test client trusts).
    pub ca_pem: String,
}

/// A certificate and key signed by an [`Authority`]: file paths.
pub struct Pair {
    /// The certificate file.
    pub cert: String,
    /// The private key file.
    pub key: String,
}

impl Authority {
    /// A new authority named `name`, its certificate written to `dir`.
    pub fn new(dir: &Path, name: &str) -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let ca = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca, issuer.pem()).unwrap();
        Authority {
            ca_pem: issuer.pem(),
            issuer,
            dir: dir.to_path_buf(),
            ca: path(ca),
        }
    }

    /// A server certificate for 127.0.0.1.
    pub fn server(&self, name: &str) -> Pair {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(name, params)
    }

    /// A client certificate whose DNS subject alternative names are `names`
    /// and whose common name is `common_name`.
    pub fn client(&self, file: &str, names: &[&str], common_name: &str) -> Pair {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(file, params)
    }

    fn sign(&self, name: &str, params: CertificateParams) -> Pair {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_file, key_file) = (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        Pair {
            cert: path(cert_file),
            key: path(key_file),
        }
    }
}

fn path(p: PathBuf) -> String {
    p.to_str().unwrap().to_owned()
}
