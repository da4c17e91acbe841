//! A TCP proxy between the agents that a test can break: drop every
//! connection (FIN), reset them (RST), or stall them (bytes are held, not
//! lost, until the stall ends), the faults a link between datacenters has.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How open connections are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Closed as a peer would (FIN).
    Drop,
    /// Reset (RST), as a middlebox that forgot the connection does.
    Reset,
}

/// A running proxy; it stops when dropped.
pub struct Proxy {
    /// Where the agents connect.
    pub port: u16,
    /// Each cut bumps the generation: connections older than it end.
    cuts: watch::Sender<(u64, Cut)>,
    /// While true, no byte is forwarded either way.
    stalled: Arc<watch::Sender<bool>>,
    /// The accept loop.
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:upstream`.
    pub async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy port");
        let port = listener.local_addr().expect("proxy address").port();
        let (cuts, _) = watch::channel((0u64, Cut::Drop));
        let stalled = Arc::new(watch::channel(false).0);
        let (cut_rx, stall_rx) = (cuts.subscribe(), stalled.subscribe());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let born = cut_rx.borrow().0;
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                for (from, to) in [(client_read, server_write), (server_read, client_write)] {
                    tokio::spawn(pump(from, to, born, cut_rx.clone(), stall_rx.clone()));
                }
            }
        });
        Proxy {
            port,
            cuts,
            stalled,
            task,
        }
    }

    /// Closes every open connection.
    pub fn drop_connections(&self) {
        self.cut(Cut::Drop);
    }

    /// Resets every open connection.
    pub fn reset_connections(&self) {
        self.cut(Cut::Reset);
    }

    fn cut(&self, how: Cut) {
        self.cuts.send_modify(|(generation, cut)| {
            *generation += 1;
            *cut = how;
        });
    }

    /// Holds every byte for `pause`, then lets them through.
    pub async fn stall(&self, pause: Duration) {
        self.stalled.send_replace(true);
        tokio::time::sleep(pause).await;
        self.stalled.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut(Cut::Reset);
    }
}

/// Forwards `from` to `to` until either side closes or a cut newer than
/// `born` comes.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    born: u64,
    mut cuts: watch::Receiver<(u64, Cut)>,
    mut stalled: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = tokio::select! {
            _ = cuts.wait_for(|(generation, _)| *generation > born) => break,
            read = from.read(&mut buffer) => read,
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        tokio::select! {
            _ = cuts.wait_for(|(generation, _)| *generation > born) => break,
            _ = stalled.wait_for(|stalled| !*stalled) => {}
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
    if cuts.borrow().1 == Cut::Reset {
        // Linger zero: closing sends RST instead of FIN.
        let _ = from.as_ref().set_zero_linger();
        let _ = to.as_ref().set_zero_linger();
    }
}
