//! The link a new source streams back on after a switchover or a
//! promotion: where the old source's target agent will listen, and the
//! files the new source's agent reaches it with. Both agents' commands
//! take these flags (`source-agent switchover`, `target-agent promote`).

/// `--reverse-address` and the TLS and token files for it.
#[derive(clap::Args, Debug, Clone)]
pub struct ReverseLink {
    /// Where the old source's target agent will listen, for the new source
    /// to stream to: http://HOST:PORT or https://HOST:PORT.
    #[arg(long)]
    pub reverse_address: String,
    /// PEM CA the new source's agent trusts that target agent's certificate
    /// by: a path on the new source's host (as add-target's --tls-ca there).
    #[arg(long)]
    pub reverse_tls_ca: Option<String>,
    /// PEM client certificate the new source's agent presents there (a path
    /// on its host).
    #[arg(long, requires = "reverse_tls_key")]
    pub reverse_tls_cert: Option<String>,
    /// Its private key (a path on the new source's host).
    #[arg(long, requires = "reverse_tls_cert")]
    pub reverse_tls_key: Option<String>,
    /// The token file the new source's agent presents there (a path on its
    /// host).
    #[arg(long)]
    pub reverse_auth_token_file: Option<String>,
}

impl ReverseLink {
    /// The CA, certificate, key and token file, in that order.
    pub fn files(&self) -> [Option<String>; 4] {
        [
            self.reverse_tls_ca.clone(),
            self.reverse_tls_cert.clone(),
            self.reverse_tls_key.clone(),
            self.reverse_auth_token_file.clone(),
        ]
    }
}
