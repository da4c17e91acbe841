//! What `deploy/` ships: the systemd units pass `systemd-analyze verify`
//! without a warning, and the environment files set only variables the
//! agents read.

use std::path::Path;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/systemd");

#[tokio::test]
async fn systemd_units_pass_systemd_analyze_verify_without_a_warning() {
    if std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze is not installed: the units are not verified");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for agent in ["source-agent", "target-agent"] {
        let unit = format!("pgferry-{agent}.service");
        // verify checks that ExecStart's binary exists: the one just built.
        let text = std::fs::read_to_string(Path::new(DEPLOY).join(&unit))
            .unwrap()
            .replace(
                &format!("/usr/local/bin/{agent}"),
                &support::bin(agent).display().to_string(),
            );
        let path = dir.path().join(&unit);
        std::fs::write(&path, text).unwrap();
        let out = tokio::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{unit}: {stderr}");
        assert!(stderr.trim().is_empty(), "{unit} warns: {stderr}");
    }
}

#[test]
fn environment_files_set_only_variables_the_agents_read() {
    for (agent, cli) in [
        ("source-agent", include_str!("../source-agent/src/cli.rs")),
        ("target-agent", include_str!("../target-agent/src/cli.rs")),
    ] {
        let example =
            std::fs::read_to_string(Path::new(DEPLOY).join(format!("{agent}.env.example")))
                .unwrap();
        let variables = example
            .lines()
            .map(|line| line.trim_start_matches("# "))
            .filter_map(|line| line.split_once('=').map(|(name, _)| name))
            .filter(|name| name.starts_with("PGFERRY_"));
        for name in variables {
            assert!(
                cli.contains(&format!("env = \"{name}\"")),
                "{agent}.env.example sets {name}, which {agent} does not read"
            );
        }
    }
}
