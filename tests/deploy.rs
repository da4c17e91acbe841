//! What `deploy/` ships: the systemd units pass `systemd-analyze verify`
//! without a warning, the environment files set only variables the agents
//! read, the Kubernetes manifests parse and wire their probes, secrets and
//! settings consistently, and the Prometheus alerting rules and the Grafana
//! dashboard load and name only metrics the running agents export.

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

/// The metric names in a Prometheus expression (a histogram's `_bucket`,
/// `_sum` and `_count` series by the histogram's name).
fn metrics_named(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("pgferry_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .map_or(name.clone(), str::to_owned);
        names.push(name);
    }
    names
}

/// The metric names a Prometheus text page declares (`# TYPE` lines).
fn exported(page: &str) -> std::collections::BTreeSet<String> {
    page.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_rules_and_dashboard_name_only_metrics_the_agents_export() {
    use support::setup::{free_port, metrics};
    use yaml_rust2::YamlLoader;

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let rules = std::fs::read_to_string(root.join("prometheus/pgferry-alerts.yml")).unwrap();
    let rules = YamlLoader::load_from_str(&rules).expect("the rules file is YAML");
    let mut exprs = Vec::new();
    for group in rules[0]["groups"].as_vec().expect("rule groups") {
        for rule in group["rules"].as_vec().expect("rules") {
            let name = rule["alert"].as_str().expect("an alert's name");
            for field in [&rule["labels"]["severity"], &rule["annotations"]["summary"]] {
                assert!(field.as_str().is_some(), "{name}: severity and summary");
            }
            exprs.push((
                name.to_owned(),
                rule["expr"].as_str().expect("expr").to_owned(),
            ));
        }
    }
    let dashboard = std::fs::read_to_string(root.join("grafana/pgferry-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).expect("JSON");
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("a panel's queries") {
            let title = panel["title"].as_str().unwrap_or_default().to_owned();
            exprs.push((title, target["expr"].as_str().expect("expr").to_owned()));
        }
    }

    // Both agents serving metrics, with a batch applied (histograms appear
    // with their first value).
    let mut r = support::Replication::new().await;
    let (source_port, target_port) = (free_port(), free_port());
    r.source_args = vec![
        "--metrics-listen".into(),
        format!("127.0.0.1:{source_port}"),
    ];
    r.target_args = vec![
        "--metrics-listen".into(),
        format!("127.0.0.1:{target_port}"),
    ];
    r.start_agents().await;
    r.src
        .batch_execute("insert into digoal.loc_test values (1, 'x', now(), now())")
        .await
        .unwrap();
    r.wait_in_sync(std::time::Duration::from_secs(60)).await;
    // A verify, so that its gauge has a value (the agent reads it each second).
    let verify = ["verify", "--source-db", &r.source_db];
    let out = support::agent::run_command("source-agent", &verify).await;
    support::setup::expect_success("verify", &out);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let mut names = exported(&metrics(source_port).await);
    let target_page = metrics(target_port).await;
    names.extend(exported(&target_page));
    for help in [
        "pgferry_batch_apply_seconds",
        "pgferry_batch_delay_seconds",
        "pgferry_batch_changes",
    ] {
        assert!(
            target_page.contains(&format!("# HELP {help} "))
                && target_page.contains(&format!("{help}_bucket{{")),
            "{help} is a described histogram:\n{target_page}"
        );
    }
    for (name, expr) in &exprs {
        let named = metrics_named(expr);
        assert!(
            !named.is_empty(),
            "{name}: `{expr}` names no pgferry metric"
        );
        for metric in named {
            assert!(
                names.contains(&metric),
                "{name}: {metric} is not exported; the agents export {names:?}"
            );
        }
    }
}

#[test]
fn kubernetes_manifests_wire_grpc_probes_secret_files_and_only_settings_the_agents_read() {
    use yaml_rust2::YamlLoader;

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    for (agent, cli) in [
        ("source-agent", include_str!("../source-agent/src/cli.rs")),
        ("target-agent", include_str!("../target-agent/src/cli.rs")),
    ] {
        let text = std::fs::read_to_string(root.join(format!("{agent}.yaml"))).unwrap();
        let docs = YamlLoader::load_from_str(&text).expect("the manifest is YAML");
        let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        let deployment = docs
            .iter()
            .find(|d| d["kind"].as_str() == Some("Deployment"))
            .unwrap_or_else(|| panic!("{agent}: a Deployment in {kinds:?}"));
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(
            container["command"][0].as_str(),
            Some(agent),
            "{agent}: runs the agent"
        );
        assert_eq!(container["command"][1].as_str(), Some("run"));
        let env = container["env"].as_vec().expect("env");
        let value = |name: &str| {
            env.iter()
                .find(|e| e["name"].as_str() == Some(name))
                .and_then(|e| e["value"].as_str())
        };
        for e in env {
            let name = e["name"].as_str().unwrap();
            assert!(
                cli.contains(&format!("env = \"{name}\"")),
                "{agent} does not read {name}"
            );
        }
        // Probes are plain gRPC health checks on the health listener.
        let health_port: i64 = value("PGFERRY_HEALTH_LISTEN")
            .and_then(|v| v.rsplit_once(':'))
            .and_then(|(_, port)| port.parse().ok())
            .expect("a health listener");
        for probe in ["readinessProbe", "livenessProbe"] {
            assert_eq!(
                container[probe]["grpc"]["port"].as_i64(),
                Some(health_port),
                "{agent}: {probe} asks grpc.health.v1 on the health listener"
            );
        }
        // Every path a setting names lies in a mounted secret, and every
        // mount is a secret's.
        let volumes = pod["volumes"].as_vec().expect("volumes");
        let mounts: Vec<(&str, &str)> = container["volumeMounts"]
            .as_vec()
            .expect("mounts")
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap(),
                    m["mountPath"].as_str().unwrap(),
                )
            })
            .collect();
        for (name, _) in &mounts {
            assert!(
                volumes.iter().any(|v| v["name"].as_str() == Some(name)
                    && v["secret"]["secretName"].as_str().is_some()),
                "{agent}: mount {name} is a secret volume"
            );
        }
        for e in env {
            if let Some(path) = e["value"].as_str().filter(|v| v.starts_with('/')) {
                assert!(
                    mounts
                        .iter()
                        .any(|(_, dir)| path.starts_with(&format!("{dir}/"))),
                    "{agent}: {path} lies in no mounted secret"
                );
            }
        }
        if agent == "target-agent" {
            for setting in [
                "PGFERRY_TLS_CERT",
                "PGFERRY_TLS_CLIENT_CA",
                "PGFERRY_AUTH_TOKEN_FILE",
            ] {
                assert!(
                    value(setting).is_some(),
                    "the target agent sets {setting}: mutual TLS and a token"
                );
            }
            let service = docs
                .iter()
                .find(|d| d["kind"].as_str() == Some("Service"))
                .expect("a Service for the target agent");
            let ports = container["ports"].as_vec().expect("ports");
            for port in service["spec"]["ports"].as_vec().expect("service ports") {
                let target = port["targetPort"].as_str().expect("a named targetPort");
                assert!(
                    ports.iter().any(|p| p["name"].as_str() == Some(target)),
                    "the Service's {target} is a container port"
                );
            }
        }
    }
}
