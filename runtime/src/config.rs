//! Layered settings: command-line flag, then `PGFERRY_<FLAG>` environment
//! variable, then `--config FILE.toml`, then the built-in default.
//!
//! clap already orders flag > env > default, so a file's entries become the
//! defaults of the arguments they name. Keys are the long flag names
//! (`source-db = "..."`); a key no command knows is an error naming it.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgMatches, Command, FromArgMatches};

/// A setting that could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML.
    #[error("config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parse error, with line and column.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// The file names a setting no command has.
    #[error("config file {path}: unknown setting `{key}`")]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The unknown key.
        key: String,
    },
    /// A value of a type settings cannot have (a table or array).
    #[error("config file {path}: setting `{key}` must be a string, number or boolean")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The key with the bad value.
        key: String,
    },
    /// A setting's value is not acceptable.
    #[error("setting `{setting}`: {reason}")]
    Invalid {
        /// The flag name of the setting.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The command line itself is wrong; clap's message says how.
    #[error(transparent)]
    Cli(#[from] clap::Error),
}

impl ConfigError {
    /// Prints the error and exits: help and version as clap does (exit 0),
    /// everything else as bad configuration (exit 64, EX_USAGE).
    pub fn exit(self) -> ! {
        match self {
            ConfigError::Cli(err) if !err.use_stderr() => err.exit(),
            ConfigError::Cli(err) => {
                let _ = err.print();
                std::process::exit(64)
            }
            other => {
                eprintln!("error: {other}");
                std::process::exit(64)
            }
        }
    }
}

/// Reads the shared secret named by an optional file setting (see
/// [`read_secret`]).
pub fn read_optional_secret(
    setting: &'static str,
    path: Option<&std::path::Path>,
) -> Result<Option<String>, ConfigError> {
    path.map(|path| read_secret(setting, path)).transpose()
}

/// Reads the file a setting names (`setting` is the flag, for the error).
pub fn read_file(setting: &'static str, path: &std::path::Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|err| ConfigError::Invalid {
        setting,
        reason: format!("cannot read {}: {err}", path.display()),
    })
}

/// Reads the PEM certificates of a CA file setting: its text and the
/// certificates it holds, at least one. Checked at start because TLS
/// libraries read them only when they connect, and a file with none would
/// fail every connection, for ever.
pub fn read_ca(
    setting: &'static str,
    path: &std::path::Path,
) -> Result<(String, Vec<rustls_pki_types::CertificateDer<'static>>), ConfigError> {
    use rustls_pki_types::pem::PemObject;
    let pem = read_file(setting, path)?;
    let invalid = |reason: String| ConfigError::Invalid { setting, reason };
    let certificates = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| invalid(format!("{}: {err}", path.display())))?;
    if certificates.is_empty() {
        return Err(invalid(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok((pem, certificates))
}

/// A certificate (chain) and its private key, read from PEM files and
/// checked at start: TLS libraries read them only when they connect.
pub struct Identity {
    /// The certificate setting (named in errors about the pair).
    pub cert_setting: &'static str,
    /// The certificate file's text.
    pub cert_pem: String,
    /// The key file's text.
    pub key_pem: String,
    /// The certificates, leaf first.
    pub chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    /// The private key.
    pub key: rustls_pki_types::PrivateKeyDer<'static>,
}

/// Reads the certificate file of setting `cert.0` and the key file of
/// setting `key.0` (see [`Identity`]).
pub fn read_identity(
    (cert_setting, cert): (&'static str, &std::path::Path),
    (key_setting, key): (&'static str, &std::path::Path),
) -> Result<Identity, ConfigError> {
    use rustls_pki_types::pem::PemObject;
    let (cert_pem, chain) = read_ca(cert_setting, cert)?;
    let key_pem = read_file(key_setting, key)?;
    let key_der =
        rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|err| {
            ConfigError::Invalid {
                setting: key_setting,
                reason: format!("{}: {err}", key.display()),
            }
        })?;
    Ok(Identity {
        cert_setting,
        cert_pem,
        key_pem,
        chain,
        key: key_der,
    })
}

/// The certificates of a CA file setting (see [`read_ca`]) as the roots a
/// TLS peer's chain must lead to.
pub fn read_roots(
    setting: &'static str,
    path: &std::path::Path,
) -> Result<rustls::RootCertStore, ConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in read_ca(setting, path)?.1 {
        roots.add(certificate).map_err(|err| ConfigError::Invalid {
            setting,
            reason: format!("{}: {err}", path.display()),
        })?;
    }
    Ok(roots)
}

/// Reads a shared secret from `path` (the `setting` flag): the file's text
/// without surrounding white space, which must not be empty.
pub fn read_secret(setting: &'static str, path: &std::path::Path) -> Result<String, ConfigError> {
    let text = read_file(setting, path)?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(ConfigError::Invalid {
            setting,
            reason: format!("{} is empty", path.display()),
        });
    }
    Ok(secret.to_owned())
}

/// Parses the process's arguments into `T` with the file and environment
/// layers applied.
pub fn parse<T: clap::CommandFactory + FromArgMatches>() -> Result<T, ConfigError> {
    parse_from::<T>(
        std::env::args_os().collect(),
        std::env::var_os("PGFERRY_CONFIG"),
    )
}

/// [`parse`] over explicit arguments and `PGFERRY_CONFIG` value.
pub fn parse_from<T: clap::CommandFactory + FromArgMatches>(
    args: Vec<OsString>,
    config_env: Option<OsString>,
) -> Result<T, ConfigError> {
    let mut command = T::command();
    if let Some(path) = config_path(&args).or(config_env.map(PathBuf::from)) {
        command = apply_file(command, &path)?;
    }
    let matches: ArgMatches = command.try_get_matches_from(args)?;
    Ok(T::from_arg_matches(&matches)?)
}

fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let arg = arg.to_string_lossy();
        if arg == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    None
}

fn apply_file(mut command: Command, path: &PathBuf) -> Result<Command, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let table: toml::Table = text.parse().map_err(|source| ConfigError::Parse {
        path: path.clone(),
        source: Box::new(source),
    })?;
    for (key, value) in table {
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => {
                return Err(ConfigError::BadValue {
                    path: path.clone(),
                    key,
                });
            }
        };
        let (next, known) = set_default(command, &key, &value);
        command = next;
        if !known || key == "config" {
            return Err(ConfigError::UnknownKey {
                path: path.clone(),
                key,
            });
        }
    }
    Ok(command)
}

/// Makes `value` the default of every argument whose long flag is `key`, in
/// the command and all its subcommands. Returns whether any had it.
fn set_default(mut command: Command, key: &str, value: &str) -> (Command, bool) {
    let ids: Vec<_> = command
        .get_arguments()
        .filter(|arg| arg.get_long() == Some(key))
        .map(|arg| arg.get_id().clone())
        .collect();
    let mut known = !ids.is_empty();
    for id in ids {
        let value = value.to_owned();
        command = command.mut_arg(id, |arg| arg.required(false).default_value(value));
    }
    let names: Vec<String> = command
        .get_subcommands()
        .map(|sub| sub.get_name().to_owned())
        .collect();
    for name in names {
        let mut found = false;
        command = command.mut_subcommand(name, |sub| {
            let (sub, has) = set_default(sub, key, value);
            found = has;
            sub
        });
        known |= found;
    }
    (command, known)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        command: Sub,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Sub {
        Run {
            #[arg(long, env = "PGFERRY_TEST_ONLY_DB")]
            db: String,
            #[arg(long, default_value_t = 5)]
            window: u32,
            #[arg(long)]
            config: Option<PathBuf>,
        },
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_file_fills_what_the_command_line_leaves_out() {
        let f = file("db = \"host=a\"\nwindow = 9\n");
        let path = f.path().to_str().unwrap();
        let cli: Cli = parse_from(args(&["x", "run", "--config", path]), None).unwrap();
        let Sub::Run { db, window, .. } = cli.command;
        assert_eq!((db.as_str(), window), ("host=a", 9));
    }

    #[test]
    fn a_flag_beats_the_file() {
        let f = file("db = \"host=a\"\n");
        let path = f.path().to_str().unwrap();
        let cli: Cli = parse_from(
            args(&["x", "run", "--db", "host=b", "--config", path]),
            None,
        )
        .unwrap();
        let Sub::Run { db, .. } = cli.command;
        assert_eq!(db, "host=b");
    }

    #[test]
    fn an_unknown_key_in_the_file_is_named() {
        let f = file("dbb = \"host=a\"\n");
        let path = f.path().to_str().unwrap();
        let err = parse_from::<Cli>(args(&["x", "run", "--config", path]), None).unwrap_err();
        assert!(err.to_string().contains("unknown setting `dbb`"), "{err}");
    }
}
