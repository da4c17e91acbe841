//! `source-agent`: parses settings and hands over to the library.

use source_agent::cli::Cli;

fn main() {
    let cli: Cli = pgferry_proto::config::parse().unwrap_or_else(|err| err.exit());
    pgferry_proto::telemetry::init();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime starts");
    if let Err(err) = runtime.block_on(source_agent::execute(cli.command)) {
        tracing::error!(error = %err, "source-agent failed");
        eprintln!("error: {err}");
        std::process::exit(
            if matches!(
                err,
                source_agent::error::Error::Config(_)
                    | source_agent::error::Error::Conninfo(_)
                    | source_agent::error::Error::BadTarget(_)
            ) {
                64
            } else {
                1
            },
        );
    }
}
