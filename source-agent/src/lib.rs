//! pgferry's source agent: capture triggers write every change of a
//! replicated table into a queue in the same transaction; the agent cuts the
//! committed changes into batches by snapshots and streams them, in commit
//! order, to a target agent; acks delete them from the queue.

// A change's trip: captured on the source, cut into batches, shipped to
// each target, acknowledged. Beside it: the operator's status, targets and
// verify, and the agent's settings, errors and metrics.
pub mod ack;
pub mod backoff;
pub mod capture;
pub mod channel;
pub mod cli;
pub mod cut;
pub mod error;
pub mod fan_out;
pub mod ids;
pub mod metrics;
pub mod rejoin;
pub mod settings;
pub mod ship;
pub mod status;
pub mod switchover;
pub mod targets;
pub mod verify;

use pgferry_runtime::{db, health};
use std::sync::Arc;

use tokio_util::task::TaskTracker;

use crate::cli::{Command, Common, RunArgs};
use crate::error::{Error, Result};

/// Name the agent's database sessions carry.
pub const APPLICATION_NAME: &str = "pgferry-source-agent";

/// Runs one command to completion; returns its exit code (`verify`: 1
/// when rows differ).
pub async fn execute(command: Command) -> Result<i32> {
    match command {
        Command::Verify(args) => return check(args, false).await,
        Command::Repair(args) => return check(args, true).await,
        Command::Install { common, capture } => {
            let mut client = connect(&common).await?;
            let (before, after) = capture::install(&mut client).await?;
            if before == after {
                println!("pgferry source schema is current (version {after})");
            } else {
                println!("pgferry source schema installed: version {before} -> {after}");
            }
            let compiled = capture::choose(&mut client, capture).await?;
            println!(
                "capture: {}",
                if compiled {
                    "compiled (extension pgferry_capture)"
                } else {
                    "PL/pgSQL"
                }
            );
            let watch = capture::watches_ddl(&client).await?;
            println!(
                "schema changes: {}",
                if watch {
                    "recorded by the DDL watch (event triggers): an ordinary ALTER TABLE replicates"
                } else {
                    "no DDL watch (event triggers need a superuser): run them through `source-agent ddl`; a table altered otherwise is set aside"
                }
            );
        }
        Command::AddTable {
            common,
            table,
            target,
            target_table,
            columns,
            row_filter,
            create_target,
            schema,
            exclude,
            follow,
            wait,
        } => {
            let mut client = connect(&common).await?;
            let added = match (schema, table) {
                (Some(schema), _) => {
                    let report = capture::add_schema(
                        &mut client,
                        &schema,
                        &exclude,
                        target.as_deref(),
                        create_target,
                    )
                    .await?;
                    for name in &report.added {
                        println!("added {name}");
                    }
                    for (name, why) in &report.skipped {
                        println!("skipped {name}: {why}");
                    }
                    if follow {
                        capture::follow_schema(
                            &client,
                            &schema,
                            &exclude,
                            target.as_deref(),
                            create_target,
                        )
                        .await?;
                        println!(
                            "following {schema}: tables created there are added as they are created"
                        );
                    }
                    report.table_ids
                }
                (None, Some(table)) => {
                    let spec = capture::TableSpec {
                        table: table.clone(),
                        to: target,
                        target: target_table,
                        columns,
                        row_filter,
                        create_target,
                    };
                    let added = capture::add_table(&mut client, &spec).await?;
                    println!("added {table}: its rows are copied with the next batch");
                    for sequence in &added.sequences {
                        println!("added sequence {sequence}: {table}'s default takes its values");
                    }
                    vec![added.table_id]
                }
                (None, None) => unreachable!("clap requires a table or --schema"),
            };
            if wait {
                status::watch::wait(&client, &added).await?;
                println!("replicating");
            }
        }
        Command::AddSequence {
            common,
            sequence,
            target,
            target_sequence,
            create_target,
        } => {
            let mut client = connect(&common).await?;
            let targets = capture::add_sequence(
                &mut client,
                &sequence,
                target_sequence.as_deref(),
                target.as_deref(),
                create_target,
            )
            .await?;
            println!("added sequence {sequence} for {targets} target(s)");
        }
        Command::RemoveTable {
            common,
            table,
            target,
        } => {
            let mut client = connect(&common).await?;
            capture::remove_table(&mut client, &table, target.as_deref()).await?;
            println!("removed {table}");
        }
        Command::SetAside {
            common,
            table,
            target,
        } => {
            let mut client = connect(&common).await?;
            capture::set_aside(&mut client, &table, target.as_deref()).await?;
            println!("set {table} aside: status shows it diverged until add-table copies it again");
        }
        Command::AddTarget {
            common,
            name,
            address,
            tls_ca,
            tls_cert,
            tls_key,
            auth_token_file,
            ddl,
        } => {
            let mut client = connect(&common).await?;
            capture::ensure_installed(&client).await?;
            let target = channel::Dial {
                address,
                tls_ca,
                tls_cert,
                tls_key,
                auth_token_file,
            };
            targets::add(&mut client, &name, &target, ddl).await?;
            println!("added target {name} ({})", target.address);
        }
        Command::Ddl { common, sql, file } => {
            let sql = match (sql, file) {
                (Some(sql), _) => sql,
                (None, Some(file)) => {
                    std::fs::read_to_string(&file).map_err(|source| Error::Io {
                        context: "reading the DDL file",
                        source,
                    })?
                }
                (None, None) => unreachable!("clap requires SQL or a file"),
            };
            let mut client = connect(&common).await?;
            capture::ensure_installed(&client).await?;
            let tables = capture::ddl::run(&mut client, &sql).await?;
            if tables.is_empty() {
                println!("ran; no replicated table changed its columns or name");
            }
            for table in tables {
                println!("recorded a schema change of {table}: its targets make it at its place");
            }
        }
        Command::DdlDone { common, target, id } => {
            let client = connect(&common).await?;
            capture::ensure_installed(&client).await?;
            let target_id = targets::resolve(&client, target.as_deref()).await?;
            let table = capture::ddl::done(&client, target_id, id).await?;
            println!("schema change {id} of {table}: the target takes its new shape as it is");
        }
        Command::Switchover {
            common,
            target,
            reverse,
            timeout,
        } => {
            let reverse_address = reverse.reverse_address.clone();
            tonic::transport::Endpoint::from_shared(reverse_address.clone())
                .map_err(|_| Error::BadTarget(reverse_address.clone()))?;
            let mut client = connect(&common).await?;
            let options = switchover::Options {
                target: target.clone(),
                reverse_address: reverse_address.clone(),
                timeout,
                reverse_files: reverse.files(),
            };
            let done = switchover::run(&mut client, &options).await?;
            println!(
                "switchover done: target {target} is the source of its tables at epoch {}, from final batch {} (fence {} ms, whole switchover {} ms)",
                done.epoch,
                done.final_batch,
                done.fenced_in.as_millis(),
                done.took.as_millis()
            );
            println!(
                "next: on {target}'s host run `source-agent run` (it streams to this database at {reverse_address}); here run `target-agent run` listening there (the tables stay fenced until it guards them)"
            );
        }
        Command::Rejoin {
            common,
            target,
            source_id,
            lost_file,
        } => {
            let mut client = connect(&common).await?;
            let options = rejoin::Options {
                target: target.clone(),
                source_id,
                lost_file: lost_file.clone(),
            };
            let rejoined = rejoin::run(&mut client, &options).await?;
            println!(
                "rejoined: target {target} was promoted at epoch {} after applying batch {}; {} transactions ({} changes) this database committed after it went to {}",
                rejoined.epoch,
                rejoined.applied,
                rejoined.transactions,
                rejoined.changes,
                lost_file.display()
            );
            println!(
                "next: here run `target-agent run` (the tables stay fenced until it guards them), on {target}'s host `source-agent run`, then `source-agent repair --target` this database from there"
            );
        }
        Command::RemoveTarget { common, name } => {
            let mut client = connect(&common).await?;
            capture::ensure_installed(&client).await?;
            targets::remove(&mut client, &name).await?;
            println!("removed target {name}");
        }
        Command::Status {
            common,
            watch: true,
            ..
        } => {
            let client = connect(&common).await?;
            capture::ensure_installed(&client).await?;
            let cancel = pgferry_runtime::shutdown::on_signal().map_err(|source| Error::Io {
                context: "installing signal handlers",
                source,
            })?;
            status::watch::watch(&client, cancel).await?;
        }
        Command::Status { common, json, .. } => {
            let client = connect(&common).await?;
            let status = status::read(&client).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&status).expect("status serializes")
                );
            } else {
                print!("{status}");
            }
        }
        Command::Run(args) => run(args).await?,
    }
    Ok(0)
}

/// `verify`, or `repair` when `repair`: prints what it found; 1 when rows
/// still differ (or a table could not be compared).
async fn check(args: cli::CheckArgs, repair: bool) -> Result<i32> {
    let options = verify::Options {
        target: args.target,
        tables: args.tables,
        max_differences: args.max_differences,
        chunk_rows: args.chunk_rows,
        timeout: args.timeout,
        source_share: args.source_share,
        repair,
    };
    let report = verify::run(&database(&args.common)?, &options).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("the report serializes")
        );
    } else {
        print!("{report}");
    }
    Ok(if report.differences > 0 || report.not_compared > 0 {
        1
    } else {
        0
    })
}

async fn connect(common: &Common) -> Result<tokio_postgres::Client> {
    db::connect(&database(common)?)
        .await
        .map_err(Error::Connect)
}

/// The source database's settings: its CONNINFO, and the TLS of every
/// session this process opens to it.
fn database(common: &Common) -> Result<tokio_postgres::Config> {
    let mut config = db::parse_conninfo("source-db", &common.source_db, APPLICATION_NAME)?;
    let files = db::DatabaseTls {
        settings: ["source-db-ca", "source-db-cert", "source-db-key"],
        ca: common.source_db_ca.as_deref(),
        cert: common.source_db_cert.as_deref(),
        key: common.source_db_key.as_deref(),
    };
    db::trust(files, &mut config)?;
    Ok(config)
}

/// `run`: cut batches and stream them until SIGTERM or SIGINT.
pub async fn run(args: RunArgs) -> Result<()> {
    let db_config = database(&args.common)?;
    let settings = settings::RunSettings::from_args(&args);
    // Fail fast on a source that cannot work at all; later outages are retried.
    let probe = db::connect(&db_config).await.map_err(Error::Connect)?;
    capture::ensure_installed(&probe).await?;
    cut::check_transaction_ids(&probe).await?;
    let first = targets::for_run(&probe, settings.flags_target.as_ref()).await?;
    for (recorded, dial) in &first {
        ship::stream::Settings::new(&settings.streams, recorded, dial)?;
    }
    drop(probe);

    let cancel = pgferry_runtime::shutdown::on_signal().map_err(|source| Error::Io {
        context: "installing signal handlers",
        source,
    })?;
    if let Some(addr) = settings.metrics_listen {
        pgferry_runtime::metrics::serve(addr)?;
        metrics::describe();
    }
    let tasks = TaskTracker::new();
    if let Some(addr) = settings.health_listen {
        let (reporter, service) = tonic_health::server::health_reporter();
        let serve = health::serve_plain(addr, service, cancel.child_token())
            .await
            .map_err(|source| Error::Io {
                context: "binding health-listen",
                source,
            })?;
        tasks.spawn(serve);
        tasks.spawn(health::follow_database(
            reporter,
            db_config.clone(),
            &capture::SCHEMA,
            cancel.child_token(),
        ));
    }

    tasks.spawn(ack::upkeep::vacuum_loop(
        db_config.clone(),
        cancel.child_token(),
    ));
    // Always: besides the metrics, it marks diverged the tables whose
    // capture it finds switched off, which status shows.
    tasks.spawn(status::delay::watch_loop(
        db_config.clone(),
        cancel.child_token(),
    ));
    tracing::info!(source_id = %settings.source_id, targets = first.len(), "source agent running");
    let result = fan_out::run(Arc::new(settings), db_config, first, cancel.clone()).await;
    cancel.cancel();
    tasks.close();
    tasks.wait().await;
    result
}
