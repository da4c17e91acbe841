//! Slony-I, the trigger-based peer written in C: its cluster set-up, slon daemons and slonik scripts.

use crate::*;

/// Runs a slonik script, which must succeed.
pub(crate) fn slonik(script: &str) {
    use std::io::Write as _;
    let mut slonik = std::process::Command::new("slonik")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("slonik runs");
    slonik
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("slonik script");
    let out = slonik.wait_with_output().expect("slonik");
    assert!(
        out.status.success(),
        "slonik: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Stops a process with SIGTERM, then SIGKILL if it lingers.
pub(crate) fn stop_process(child: &mut std::process::Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Why Slony-I cannot be measured here, if it cannot: its programs and
/// the server's library are Debian's `slony1-2-bin` and
/// `postgresql-NN-slony1-2`.
pub(crate) fn slony_missing() -> Option<String> {
    let found = |program: &str| {
        std::process::Command::new(program)
            .arg("-v")
            .output()
            .is_ok_and(|out| out.status.success())
    };
    let library = std::fs::read_dir(bindir().join("../lib")).is_ok_and(|dir| {
        dir.flatten()
            .any(|f| f.file_name().to_string_lossy().starts_with("slony1_funcs"))
    });
    if found("slonik") && found("slon") && library {
        None
    } else {
        Some(
            "Slony-I is not installed (apt-get install postgresql-15-slony1-2 slony1-2-bin)".into(),
        )
    }
}

impl Bench {
    /// Replicates the measured tables with Slony-I: a cluster of two nodes,
    /// one set, the subscriber's initial copy done; slon's settings are its
    /// defaults but the SYNC check interval (`-s 100`, 2 s by default),
    /// which is what bounds its lag. Done once the other systems' turns are
    /// over, as native's is.
    pub(crate) async fn set_up_slony(&mut self) {
        let node = |cluster: &PgCluster| cluster.conninfo("slony", "postgres", "");
        let mut script = format!(
            "cluster name = bench;
             node 1 admin conninfo = '{source}';
             node 2 admin conninfo = '{target}';
             init cluster (id = 1, comment = 'source');
             create set (id = 1, origin = 1, comment = 'measured tables');\n",
            source = node(&self.source),
            target = node(&self.target),
        );
        for (id, table) in ["t_rep", "hb", "drain", "single_rep"].iter().enumerate() {
            script.push_str(&format!(
                "set add table (set id = 1, origin = 1, id = {}, fully qualified name = 'public.{table}');\n",
                id + 1
            ));
        }
        script.push_str(&format!(
            "store node (id = 2, comment = 'target', event node = 1);
             store path (server = 1, client = 2, conninfo = '{source}');
             store path (server = 2, client = 1, conninfo = '{target}');\n",
            source = node(&self.source),
            target = node(&self.target),
        ));
        slonik(&script);
        let origin = self.slon(&self.source, 0);
        let subscriber = self.slon(&self.target, 1);
        self.slons = vec![origin, subscriber];
        // slonik waits for the slons to confirm the nodes before subscribing.
        slonik(&format!(
            "cluster name = bench;
             node 1 admin conninfo = '{source}';
             node 2 admin conninfo = '{target}';
             subscribe set (id = 1, provider = 1, receiver = 2, forward = no);\n",
            source = node(&self.source),
            target = node(&self.target),
        ));
        self.wait_equal(System::Slony, "t_rep", Duration::from_secs(300))
            .await;
    }

    /// Starts a slon daemon for `cluster`'s node, on `cpu` when pinned; its
    /// output goes to `PGFERRY_BENCH_LOGS`/slon-N.log, when set.
    pub(crate) fn slon(&self, cluster: &PgCluster, cpu: u32) -> std::process::Child {
        let log = match std::env::var("PGFERRY_BENCH_LOGS") {
            Ok(dir) => std::process::Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(std::path::Path::new(&dir).join(format!("slon-{cpu}.log")))
                    .expect("slon log"),
            ),
            Err(_) => std::process::Stdio::null(),
        };
        // Pinned from the start (slon forks its worker at once).
        let mut command = if pinned() {
            let mut taskset = std::process::Command::new("taskset");
            taskset.args(["-c", &cpu.to_string(), "slon"]);
            taskset
        } else {
            std::process::Command::new("slon")
        };
        command
            .args(["-s", "100", "bench"])
            .arg(cluster.conninfo("slony", "postgres", ""))
            .stdout(log)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("slon runs")
    }
}
