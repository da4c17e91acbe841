//! `source-agent`: parses settings and hands over to the library.

use source_agent::cli::{Cli, Command};
use source_agent::error::Error;

fn main() {
    let cli: Cli = pgferry_runtime::config::parse().unwrap_or_else(|err| err.exit());
    pgferry_runtime::telemetry::init();
    // `verify` says "differences" with 1, so its errors need another code.
    let checking = matches!(cli.command, Command::Verify(_) | Command::Repair(_));
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime starts");
    match runtime.block_on(source_agent::execute(cli.command)) {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("error: {err}");
            let bad_config = matches!(
                err,
                Error::Config(_) | Error::Conninfo(_) | Error::BadTarget(_) | Error::BadToken
            );
            std::process::exit(match (bad_config, checking) {
                (true, _) => 64,
                (false, true) => 2,
                (false, false) => 1,
            });
        }
    }
}
