//! How gently `verify` reads a busy source: while other sessions are
//! running statements on it, the command's reads take at most a share of
//! its time (`--source-share`), leaving the CPU to the writers; an idle
//! source is read at full speed. Busy means what pt-table-checksum's
//! `--max-load` looks at: sessions other than pgferry's own that are
//! running a statement now.

use std::time::Duration;

use tokio_postgres::Client;

use crate::error::{Error, Result};

/// The pace of one command's reads.
#[derive(Debug)]
pub struct Pace {
    /// The share of its time, in percent, the reads may take while the
    /// source is busy.
    share: u32,
}

impl Pace {
    /// A pace at `share` percent (100: never pause).
    pub fn new(share: u8) -> Pace {
        Pace {
            share: u32::from(share.clamp(1, 100)),
        }
    }

    /// How long to pause after a read that took `took`, when the source is
    /// `busy`: long enough that the read took `share` of the time.
    pub fn pause(&self, took: Duration, busy: bool) -> Duration {
        if !busy || self.share >= 100 {
            return Duration::ZERO;
        }
        took * (100 - self.share) / self.share
    }

    /// Whether sessions other than this command's and the agents' are
    /// running statements on the source now (asked on `client`), unless
    /// the pace never pauses anyway.
    pub async fn busy(&self, client: &Client) -> Result<bool> {
        if self.share >= 100 {
            return Ok(false);
        }
        let row = client
            .query_one(
                "select exists (select from pg_stat_activity
                                where state = 'active' and backend_type = 'client backend'
                                  and pid <> pg_backend_pid()
                                  and application_name not like 'pgferry%')",
                &[],
            )
            .await
            .map_err(Error::db("looking at the source's load"))?;
        Ok(row.get(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn reads_of_an_idle_source_never_pause() {
        assert_eq!(Pace::new(10).pause(50 * MS, false), Duration::ZERO);
    }

    #[test]
    fn reads_of_a_busy_source_take_their_share_of_the_time() {
        assert_eq!(Pace::new(10).pause(5 * MS, true), 45 * MS);
        assert_eq!(Pace::new(25).pause(5 * MS, true), 15 * MS);
    }

    #[test]
    fn a_full_share_never_pauses() {
        assert_eq!(Pace::new(100).pause(500 * MS, true), Duration::ZERO);
    }
}
