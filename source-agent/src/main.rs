//! `source-agent`: parses settings and hands over to the library.

use source_agent::cli::Cli;
use source_agent::error::Error;

fn main() {
    let cli: Cli = pgferry_runtime::config::parse().unwrap_or_else(|err| err.exit());
    pgferry_runtime::telemetry::init();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime starts");
    if let Err(err) = runtime.block_on(source_agent::execute(cli.command)) {
        eprintln!("error: {err}");
        let bad_config = matches!(
            err,
            Error::Config(_) | Error::Conninfo(_) | Error::BadTarget(_) | Error::BadToken
        );
        std::process::exit(if bad_config { 64 } else { 1 });
    }
}
