//! The results table printed after a run.

use crate::*;

pub(crate) fn print_table(r: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    if r["pinned"].as_bool() == Some(true) {
        println!("PGFERRY_BENCH_PIN=1: the source's side on CPU 0, the target's on CPU 1");
        println!();
    }
    let (p, n, sl) = (&r["pgferry"], &r["native"], &r["slony"]);
    println!("| measure | pgferry | native | Slony-I | pgferry / native | pgferry / Slony-I |");
    println!("|---|---|---|---|---|---|");
    // Name, where in each system's results, decimals.
    let rows = [
        (
            "capture overhead, % (paired 5 s slices)",
            "/overhead_pct",
            1,
        ),
        (
            "capture overhead on a table of 8 partitions, %",
            "/partitioned/overhead_pct",
            1,
        ),
        (
            "200k single-statement changes, writers' s, replicated table",
            "/single_s/replicated",
            1,
        ),
        (
            "200k single-statement changes, writers' s, plain table",
            "/single_s/plain",
            1,
        ),
        (
            "200k single-statement changes, replicated / plain",
            "/single_s/ratio",
            2,
        ),
        (
            "the same, agents stopped (capture alone), replicated / plain",
            "/single_s/capture_alone/ratio",
            2,
        ),
        (
            "the agents' share: replicated / plain, minus the capture alone's",
            "/single_s/agents_add",
            2,
        ),
        (
            "the same: CPU s of the source agent and its sessions on the source",
            "/single_s/agents_cpu_s",
            1,
        ),
        (
            "3 x 1,000 updates beside a 5 MB value, writers' s, replicated table",
            "/large/replicated_s",
            2,
        ),
        (
            "3 x 1,000 updates beside a 5 MB value, replicated / plain",
            "/large/ratio",
            2,
        ),
        (
            "1,000 updates beside a 5 MB value, WAL bytes per update (plain: see json)",
            "/large/wal_bytes_per_update",
            0,
        ),
        (
            "1,000 updates beside a 5 MB value, queue bytes per update",
            "/large/queue_bytes_per_update",
            0,
        ),
        (
            "catch-up of 200k changes, rows/s",
            "/catch_up_rows_per_s",
            0,
        ),
        ("lag p50 at 500 TPS, ms", "/lag_ms/p50", 1),
        ("lag p99 at 500 TPS, ms", "/lag_ms/p99", 1),
        ("lag max at 500 TPS, ms", "/lag_ms/max", 1),
        (
            "lag p50 at 500 TPS through a 50 ms round-trip relay, ms",
            "/lag_far_ms/p50",
            1,
        ),
        (
            "lag p99 at 500 TPS through a 50 ms round-trip relay, ms",
            "/lag_far_ms/p99",
            1,
        ),
        ("bulk INSERT of 1M rows, s", "/bulk_insert_s", 1),
        ("bulk UPDATE of 1M rows, s", "/bulk_update_s", 1),
    ];
    for (name, at, digits) in rows {
        let a = p.pointer(at).map_or(f64::NAN, f);
        let b = n.pointer(at).map_or(f64::NAN, f);
        let c = sl.pointer(at).map_or(f64::NAN, f);
        println!(
            "| {name} | {a:.digits$} | {b:.digits$} | {c:.digits$} | {:.2} | {:.2} |",
            a / b,
            a / c
        );
    }
    if let Some(why) = sl["skipped"].as_str() {
        println!();
        println!("Slony-I: not measured: {why}");
    }
    println!();
    println!(
        "| pgferry backlog, target settings | source agent peak RSS, MiB | target agent peak RSS, MiB | drain rows/s |"
    );
    println!("|---|---|---|---|");
    for (name, _) in BACKLOG_SETTINGS {
        let b = &r["pgferry_backlog"][name];
        for size in ["200k", "2M"] {
            println!(
                "| {size}, {name} | {} | {} | {:.0} |",
                b[size]["source_rss_mib"],
                b[size]["target_rss_mib"],
                f(&b[size]["rows_per_s"])
            );
        }
    }
    let d = &r["pgferry_distance"];
    let (near, far) = (f(&d["loopback_rows_per_s"]), f(&d["relay_50ms_rows_per_s"]));
    let (near_z, far_z) = (
        f(&d["loopback_zstd_rows_per_s"]),
        f(&d["relay_50ms_zstd_rows_per_s"]),
    );
    println!();
    println!(
        "| pgferry catch-up of 200k changes | loopback, rows/s | 50 ms relay, rows/s | relay / loopback |"
    );
    println!("|---|---|---|---|");
    println!("| plain | {near:.0} | {far:.0} | {:.2} |", far / near);
    println!(
        "| --compression zstd | {near_z:.0} | {far_z:.0} | {:.2} |",
        far_z / near_z
    );
    println!();
    if let Some(times) = r["pgferry_recovery_ms"]
        .as_array()
        .filter(|t| !t.is_empty())
    {
        let times: Vec<String> = times.iter().map(|t| format!("{:.0}", f(t))).collect();
        println!(
            "pgferry: a row written during a 7 s target outage is on the target {} ms after the target agent starts again",
            times.join(" / ")
        );
        println!();
    }
    let s = &r["pgferry_switchover"];
    if s.is_object() {
        let list = |key: &str| -> String {
            s[key]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| format!("{:.0}", f(t)))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        println!(
            "pgferry: three switchovers at 500 TPS (a to b, back, again): writes unavailable (first refused to first accepted) {} ms; longest single write {} ms; whole switchover {} ms",
            list("unavailable_ms"),
            list("longest_write_ms"),
            list("took_ms")
        );
        println!();
    }
    let v = &r["pgferry_verify"];
    if v.is_object() {
        println!();
        println!("| verify and repair of a 1M-row table (pgferry, sides on a CPU each) | |");
        println!("|---|---|");
        println!("| initial copy, rows/s | {:.0} |", f(&v["copy_rows_per_s"]));
        for alone in v["alone"].as_array().into_iter().flatten() {
            println!(
                "| verify alone, --chunk-rows {}, rows/s | {:.0} |",
                alone["chunk_rows"].as_str().unwrap_or_default(),
                f(&alone["verify_rows_per_s"])
            );
        }
        for share in v["shares"].as_array().into_iter().flatten() {
            let rates: Vec<f64> = share["verify_rows_per_s"]
                .as_array()
                .map(|a| a.iter().map(f).collect())
                .unwrap_or_default();
            let mean = rates.iter().sum::<f64>() / rates.len().max(1) as f64;
            let (alone, during) = (f(&share["tps_alone"]), f(&share["tps_during_verify"]));
            println!(
                "| --source-share {}: verify rows/s (mean of {}); pgbench TPS alone / during | {mean:.0}; {alone:.0} / {during:.0} ({:.1} %) |",
                share["source_share"],
                rates.len(),
                during / alone * 100.0
            );
        }
        println!(
            "| repair of 1 % of the rows, scattered: s, rows written | {:.1} s, {} |",
            f(&v["repair_s"]),
            v["repair_rows"]
        );
        println!(
            "| verify after the repair equal | {} |",
            v["equal_after_repair"]
        );
    }
    let d = &r["pgferry_ddl"];
    if d.is_object() {
        let (with, without) = (
            f(&d["tps_with_event_triggers"]),
            f(&d["tps_without_event_triggers"]),
        );
        println!();
        println!("| schema changes (pgferry, sides on a CPU each) | |");
        println!("|---|---|");
        println!(
            "| pgbench TPS with the DDL watch / without | {with:.0} / {without:.0} ({:.1} %) |",
            with / without * 100.0
        );
        for alter in d["alters"].as_array().into_iter().flatten() {
            println!(
                "| 1M-row table, {}: source commit to target, s (under load); the same ALTER on the target alone, s | {:.2}; {:.2} |",
                alter["alter"].as_str().unwrap_or_default(),
                f(&alter["source_commit_to_target_s"]),
                f(&alter["target_alone_s"])
            );
        }
    }
    let fan = &r["pgferry_fan_out"];
    if fan.is_object() {
        let (one, three) = (f(&fan["one_target_tps"]), f(&fan["three_targets_tps"]));
        let (plain_one, plain_three) = (
            f(&fan["plain_tps_beside_one"]),
            f(&fan["plain_tps_beside_three"]),
        );
        println!(
            "| pgferry fan-out (TPS and CPU: source's side on CPU 0, target's on CPU 1) | one target | three targets | cost, three / one |"
        );
        println!("|---|---|---|---|");
        println!(
            "| pgbench single-row updates, TPS (plain table beside) | {one:.0} ({plain_one:.0}) | {three:.0} ({plain_three:.0}) | {:.2}x |",
            one / three
        );
        for (what, key) in [
            ("source agent", "source_agent_cpu_s"),
            ("target side (cluster and agents)", "target_side_cpu_s"),
        ] {
            let cpu = &fan[key];
            println!(
                "| {what} CPU over those 30 s, s | {:.1} | {:.1} | {:.2}x |",
                f(&cpu["one_target"]),
                f(&cpu["three_targets"]),
                f(&cpu["three_targets"]) / f(&cpu["one_target"])
            );
        }
        let rates: Vec<String> = fan["three_targets_catch_up_rows_per_s"]
            .as_array()
            .map(|r| r.iter().map(|v| format!("{:.0}", f(v))).collect())
            .unwrap_or_default();
        println!(
            "| catch-up of 200k changes, rows/s per target | {:.0} (measure above) | {} | |",
            f(&r["pgferry"]["catch_up_rows_per_s"]),
            rates.join(" / ")
        );
        println!();
    }
    if let Some(samples) = r["pgferry_soak"]["samples"].as_array() {
        println!("| pgferry queue at 500 TPS, after s | size, MiB | rows | dead rows |");
        println!("|---|---|---|---|");
        for sample in samples
            .iter()
            .filter(|s| s["s"].as_u64().unwrap_or(0) % 60 < 10)
        {
            println!(
                "| {} | {:.1} | {} | {} |",
                sample["s"],
                f(&sample["size_mib"]),
                sample["live"],
                sample["dead"]
            );
        }
        let most = |key: &str| samples.iter().map(|s| f(&s[key])).fold(0.0, f64::max);
        println!(
            "| most in any sample | {:.1} | {} | {} |",
            most("size_mib"),
            most("live"),
            most("dead")
        );
        let after = &r["pgferry_soak"]["after"];
        println!(
            "| acked and vacuumed, after the run | {:.1} | {} | {} |",
            f(&after["size_mib"]),
            after["live"],
            after["dead"]
        );
        println!();
    }
    println!("| pgferry queue, acked and vacuumed, after | size, MiB | rows | dead rows |");
    println!("|---|---|---|---|");
    for (key, value) in r["pgferry_queue"].as_object().into_iter().flatten() {
        println!(
            "| {key} | {:.1} | {} | {} |",
            f(&value["size_mib"]),
            value["live"],
            value["dead"]
        );
    }
}
