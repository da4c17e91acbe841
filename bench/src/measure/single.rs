//! Single-statement autocommit writes: the writers' own time for INSERTs, UPDATEs and DELETEs from one pgbench client, replicated table against plain.

use crate::*;

/// INSERTs of the single-statement measure (then half as many UPDATEs and
/// half as many DELETEs).
pub(crate) const SINGLE_INSERTS: u32 = 100_000;

/// The single-statement INSERTs: [`SINGLE_INSERTS`] unless
/// `PGFERRY_BENCH_SINGLE_INSERTS` says fewer, for a quick look at a change.
pub(crate) fn single_inserts() -> u32 {
    std::env::var("PGFERRY_BENCH_SINGLE_INSERTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(SINGLE_INSERTS)
}

impl Bench {
    /// Measure: the writers' own time for single-statement autocommit
    /// changes, the workload that compacts least: 100k INSERTs, 50k UPDATEs
    /// and 50k DELETEs, one row each, from one pgbench client, on the
    /// replicated table and on an identical plain one, phase by phase in
    /// turn. Returns the seconds (replicated, plain), summed over the phases.
    /// Each DELETE takes its id in a subquery: `nextval` in the WHERE
    /// clause itself would run for every row scanned.
    pub(crate) fn single_statements(&self, system: System) -> (f64, f64) {
        let (mut rep, mut plain) = (0.0, 0.0);
        for (statements, phase) in [
            (
                single_inserts(),
                "insert into {t} values (nextval('{t}_insert'), 0);",
            ),
            (
                single_inserts() / 2,
                "\\set id random(1, 100000)\nupdate {t} set v = v + 1 where id = :id;",
            ),
            (
                single_inserts() / 2,
                "delete from {t} where id = (select nextval('{t}_delete'));",
            ),
        ] {
            for (table, seconds) in [("single_rep", &mut rep), ("single_plain", &mut plain)] {
                let script = phase.replace("{t}", table);
                let count = statements.to_string();
                let tps = self.pgbench(system, &script, &["-c", "1", "-t", &count]);
                *seconds += statements as f64 / tps;
            }
        }
        (rep, plain)
    }

    /// The CPU seconds so far of what pgferry's agents cost the source's
    /// host: the source agent and its sessions on the source server
    /// (`application_name` pgferry...), alive now. NaN for the other
    /// systems.
    pub(crate) async fn agents_source_cpu(&self, system: System) -> f64 {
        if system != System::Pgferry {
            return f64::NAN;
        }
        let sessions: Vec<i32> = self
            .ferry_src
            .query(
                "select pid from pg_stat_activity where application_name like 'pgferry%'",
                &[],
            )
            .await
            .expect("the agents' sessions")
            .iter()
            .map(|row| row.get(0))
            .collect();
        let agent = self
            .source_agent
            .as_ref()
            .map_or(0.0, |agent| cpu_seconds(&agent.pid().to_string(), false));
        agent
            + sessions
                .iter()
                .map(|pid| cpu_seconds(&pid.to_string(), false))
                .sum::<f64>()
    }
}
