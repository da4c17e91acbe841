//! A throwaway PostgreSQL cluster: copied from a template made once by
//! initdb, started by pg_ctl on a free port with fsync off, logging to a
//! file, stopped immediately and removed on drop. As root, the server runs as
//! the `postgres` user in a directory it owns (PostgreSQL refuses root).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

/// One running cluster.
pub struct PgCluster {
    /// Holds the data directory; removed on drop.
    dir: tempfile::TempDir,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
}

/// The directory with initdb, pg_ctl and postgres: `PG_BINDIR`, or the
/// newest `/usr/lib/postgresql/*/bin`, or whatever is on PATH.
pub fn bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).unwrap_or_default()
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Runs a server program (initdb, pg_ctl, pgbench...), as `postgres` when we are root.
pub fn pg_command(program: &str) -> Command {
    let path = bindir().join(program);
    if running_as_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(path);
        cmd
    } else {
        Command::new(path)
    }
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn chown_to_postgres(path: &Path) {
    if running_as_root() {
        run(
            {
                let mut c = Command::new("chown");
                c.args(["-R", "postgres:postgres"]).arg(path);
                c
            },
            "chown",
        );
    }
}

/// An initialised data directory to copy, made once per machine and server
/// version (initdb is the slow part of a cluster).
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let version = bindir()
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let uid = std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!("pgferry-template-{uid}-pg{version}"));
        if path.join("PG_VERSION").exists() {
            return path;
        }
        let staging = tempfile::Builder::new()
            .prefix("pgferry-initdb-")
            .tempdir()
            .expect("temp dir")
            .keep();
        chown_to_postgres(&staging);
        let data = staging.join("data");
        let mut initdb = pg_command("initdb");
        initdb
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
                "-D",
            ])
            .arg(&data);
        run(initdb, "initdb");
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             host all postgres 127.0.0.1/32 trust\n\
             host all all 127.0.0.1/32 scram-sha-256\n",
        )
        .expect("pg_hba.conf");
        // Another test process may have won the race; either copy is fine.
        if std::fs::rename(&data, &path).is_err() {
            assert!(path.join("PG_VERSION").exists(), "template at {path:?}");
        }
        let _ = std::fs::remove_dir_all(&staging);
        path
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl PgCluster {
    /// Starts a new cluster.
    pub fn start() -> PgCluster {
        PgCluster::start_with("")
    }

    /// Starts a new cluster with extra `postgresql.conf` lines.
    pub fn start_with(extra_conf: &str) -> PgCluster {
        let dir = tempfile::Builder::new()
            .prefix("pgferry-pg-")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("data");
        run(
            {
                let mut c = Command::new("cp");
                c.arg("-a").arg(template()).arg(&data);
                c
            },
            "copying the template cluster",
        );
        let port = free_port();
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\nfull_page_writes = off\nshared_buffers = 32MB\nmax_connections = 60\n\
             max_wal_size = 256MB\n{extra_conf}\n",
            dir.path().display()
        );
        let mut auto = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.auto.conf"))
            .expect("postgresql.auto.conf");
        std::io::Write::write_all(&mut auto, conf.as_bytes()).expect("write conf");
        chown_to_postgres(dir.path());
        let cluster = PgCluster { dir, port };
        cluster.start_server();
        cluster
    }

    /// The cluster's directory (owned by the server's user).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Turns TLS on, serving `cert_pem` with `key_pem` (a reload: sessions
    /// already open stay as they are).
    pub async fn enable_ssl(&self, cert_pem: &str, key_pem: &str) {
        let (cert, key) = (
            self.dir.path().join("server.crt"),
            self.dir.path().join("server.key"),
        );
        std::fs::write(&cert, cert_pem).expect("server certificate");
        std::fs::write(&key, key_pem).expect("server key");
        // The server refuses a key others may read.
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("key file mode");
        chown_to_postgres(&cert);
        chown_to_postgres(&key);
        let client = self.connect("postgres").await;
        // One statement at a time: ALTER SYSTEM refuses a transaction block.
        for statement in [
            format!("alter system set ssl_cert_file = '{}'", cert.display()),
            format!("alter system set ssl_key_file = '{}'", key.display()),
            "alter system set ssl = on".into(),
            "select pg_reload_conf()".into(),
        ] {
            client.batch_execute(&statement).await.expect("ssl on");
        }
        // The postmaster rereads its settings a moment after being asked.
        super::wait_until("the server serves TLS", Duration::from_secs(10), || async {
            let row = self
                .connect("postgres")
                .await
                .query_one("show ssl", &[])
                .await;
            row.is_ok_and(|row| row.get::<_, String>(0) == "on")
                .then_some(())
        })
        .await;
    }

    /// Requires a client certificate signed by `ca_pem` of every TLS session
    /// from 127.0.0.1, its common name the role it logs in as (the `cert`
    /// method); sessions without TLS keep the rules they had (a reload).
    pub async fn require_client_certificates(&self, ca_pem: &str) {
        let ca = self.dir.path().join("client-ca.crt");
        std::fs::write(&ca, ca_pem).expect("client CA");
        chown_to_postgres(&ca);
        let hba = self.data().join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba).expect("pg_hba.conf");
        std::fs::write(&hba, format!("hostssl all all 127.0.0.1/32 cert\n{rules}"))
            .expect("pg_hba.conf");
        let client = self.connect("postgres").await;
        for statement in [
            format!("alter system set ssl_ca_file = '{}'", ca.display()),
            "select pg_reload_conf()".into(),
        ] {
            client.batch_execute(&statement).await.expect("client CA");
        }
        super::wait_until(
            "the server asks for client certificates",
            Duration::from_secs(10),
            || async {
                let row = self
                    .connect("postgres")
                    .await
                    .query_one("show ssl_ca_file", &[])
                    .await;
                row.is_ok_and(|row| row.get::<_, String>(0) == ca.display().to_string())
                    .then_some(())
            },
        )
        .await;
    }

    /// The server log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Starts the server (again). After a kill -9 the old server's children
    /// may hold its shared memory a moment longer: retry until they are gone.
    pub fn start_server(&self) {
        let mut last = None;
        for _ in 0..30 {
            let mut ctl = pg_command("pg_ctl");
            ctl.args(["-w", "-t", "60", "-D"])
                .arg(self.data())
                .arg("-l")
                .arg(self.dir.path().join("server.log"))
                .arg("start");
            let out = ctl.output().expect("pg_ctl start");
            if out.status.success() {
                return;
            }
            last = Some(String::from_utf8_lossy(&out.stderr).into_owned());
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        panic!("pg_ctl start failed: {last:?}\n{}", self.log());
    }

    /// Stops the server at once (a crash, as far as clients can tell).
    pub fn stop_server(&self) {
        let mut ctl = pg_command("pg_ctl");
        ctl.args(["-w", "-D"])
            .arg(self.data())
            .args(["-m", "immediate", "stop"]);
        run(ctl, "pg_ctl stop");
    }

    /// Takes a file-level backup of the stopped server's data directory,
    /// which [`PgCluster::restore`] puts back.
    pub fn back_up(&self) {
        let backup = self.dir.path().join("backup");
        let _ = std::fs::remove_dir_all(&backup);
        let mut cp = Command::new("cp");
        cp.arg("-a").arg(self.data()).arg(&backup);
        run(cp, "copying the data directory");
    }

    /// Replaces the stopped server's data directory with its backup: the
    /// server starts as it was then (as after a restore, or a failover to
    /// a standby that had not received what followed).
    pub fn restore(&self) {
        std::fs::remove_dir_all(self.data()).expect("remove the data directory");
        let mut cp = Command::new("cp");
        cp.arg("-a")
            .arg(self.dir.path().join("backup"))
            .arg(self.data());
        run(cp, "restoring the data directory");
    }

    /// `kill -9` of the postmaster; its children follow by themselves.
    pub fn kill9(&self) {
        let pidfile =
            std::fs::read_to_string(self.data().join("postmaster.pid")).expect("pid file");
        let pid = pidfile.lines().next().expect("pid line").trim().to_owned();
        let mut kill = Command::new("kill");
        kill.args(["-9", &pid]);
        run(kill, "kill -9 postmaster");
    }

    /// The postmaster's process id and those of the processes it started.
    pub fn pids(&self) -> Vec<String> {
        let pidfile =
            std::fs::read_to_string(self.data().join("postmaster.pid")).expect("pid file");
        let pid = pidfile.lines().next().expect("pid line").trim().to_owned();
        let children = Command::new("pgrep")
            .args(["-P", &pid])
            .output()
            .expect("pgrep");
        let mut pids = vec![pid];
        pids.extend(
            String::from_utf8_lossy(&children.stdout)
                .split_whitespace()
                .map(str::to_owned),
        );
        pids
    }

    /// Sends `signal` (e.g. "-STOP", "-CONT") to the postmaster and every
    /// process it started, so the whole server freezes or thaws.
    pub fn signal_all(&self, signal: &str) {
        // A child that just exited is no error.
        let _ = Command::new("kill").arg(signal).args(self.pids()).status();
    }

    /// CONNINFO for `user` (password `pw`) on database `db`.
    pub fn conninfo(&self, db: &str, user: &str, pw: &str) -> String {
        let password = if pw.is_empty() {
            String::new()
        } else {
            format!(" password={pw}")
        };
        format!(
            "host=127.0.0.1 port={} dbname={db} user={user}{password}",
            self.port
        )
    }

    /// A superuser session on `db`.
    pub async fn connect(&self, db: &str) -> Client {
        let conninfo = self.conninfo(db, "postgres", "");
        let (client, connection) = tokio_postgres::connect(&conninfo, NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to port {}: {e}\n{}", self.port, self.log()));
        tokio::spawn(connection);
        client
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let mut ctl = pg_command("pg_ctl");
        ctl.args(["-w", "-D"])
            .arg(self.data())
            .args(["-m", "immediate", "stop"]);
        let _ = ctl.output();
    }
}
