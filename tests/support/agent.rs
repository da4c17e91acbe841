//! The real agent binaries: found next to the test executable (or in
//! `PGFERRY_BIN_DIR`), run with their output in a log file, killed on drop.

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};

/// The path of an agent binary built by `cargo build --workspace --bins`.
pub fn bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("PGFERRY_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{path:?} is missing: run `cargo build --workspace --bins` first"
    );
    path
}

/// Runs an agent command to completion (install, add-table, status, ...).
pub async fn run_command(name: &str, args: &[&str]) -> Output {
    Command::new(bin(name))
        .args(args)
        .env_remove("PGFERRY_CONFIG")
        .output()
        .await
        .expect("agent command runs")
}

/// A running agent process.
pub struct Agent {
    /// The process; killed if still running on drop.
    child: Child,
    /// Which binary, for messages.
    name: String,
    /// Its arguments, to restart it the same way.
    args: Vec<String>,
    /// Where its stderr goes.
    log: PathBuf,
    /// How many times it was started (each start logs "agent running" once
    /// it listens).
    starts: usize,
    /// Keeps the log's directory alive.
    _dir: tempfile::TempDir,
}

impl Agent {
    /// Starts `name` with `args`.
    pub fn spawn(name: &str, args: &[String]) -> Agent {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join(format!("{name}.log"));
        let child = Self::start(name, args, &log);
        Agent {
            child,
            name: name.to_owned(),
            args: args.to_vec(),
            log,
            starts: 1,
            _dir: dir,
        }
    }

    fn start(name: &str, args: &[String], log: &PathBuf) -> Child {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        Command::new(bin(name))
            .args(args)
            // PGFERRY_AGENT_LOG (e.g. "debug") looks closer at a failing run.
            .env(
                "RUST_LOG",
                std::env::var("PGFERRY_AGENT_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("agent starts")
    }

    /// Everything the agent logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// How the process exited, once it has.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Panics with the log if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited with {status}:\n{}", self.name, self.log());
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Peak resident memory of the process, from /proc (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM");
        kib / 1024
    }

    /// `kill -9`, and waits for the process to be gone.
    pub async fn kill9(&mut self) {
        self.child.kill().await.expect("kill -9");
    }

    /// Sends `signal` (e.g. "-STOP", "-CONT", "-TERM").
    pub fn signal(&self, signal: &str) {
        std::process::Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .expect("kill");
    }

    /// Starts the same command again (after a kill).
    pub fn restart(&mut self) {
        self.child = Self::start(&self.name, &self.args, &self.log);
        self.starts += 1;
    }

    /// Whether its latest start got as far as listening: its log says
    /// "agent running" once per start. A health check alone can be answered
    /// by another test's agent that took the same port first.
    pub fn listening(&self) -> bool {
        self.log().matches(" agent running").count() >= self.starts
    }

    /// SIGTERM, then waits up to `grace` for a clean exit; returns whether it
    /// exited successfully.
    pub async fn terminate(&mut self, grace: Duration) -> bool {
        self.signal("-TERM");
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => status.success(),
            _ => false,
        }
    }
}
