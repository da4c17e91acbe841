//! The gRPC service: one `Replicate` stream per source. A peer is
//! authenticated and its hello checked before the call is answered, so a
//! bad source gets its error as the call's status; the stream itself is a
//! session (see [`crate::session`]).

use std::sync::Arc;
use std::time::Duration;

use pgferry_proto::wire::{self, replication_server::Replication};
use tokio_postgres::Config;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};

use crate::apply::Retries;
use crate::auth::Gate;
use crate::{frame, session};

/// The replication service.
pub struct ReplicationService {
    /// How the applier sessions connect.
    pub db_config: Config,
    /// Stops every stream at shutdown, between chunks.
    pub cancel: CancellationToken,
    /// What a peer must show before its hello is read.
    pub gate: Gate,
    /// Batches to apply with upserts when resent, shared by all streams.
    pub retries: Arc<Retries>,
    /// Bytes of a batch held back to drop overwritten changes.
    pub compact_window: usize,
    /// How long an open batch may wait for its next chunk (see
    /// `--batch-idle-timeout`).
    pub batch_idle_timeout: Duration,
    /// Every stream's tasks, so shutdown can wait for them.
    pub tasks: TaskTracker,
}

#[tonic::async_trait]
impl Replication for ReplicationService {
    type ReplicateStream = ReceiverStream<Result<wire::TargetMessage, Status>>;

    async fn replicate(
        &self,
        request: Request<Streaming<wire::SourceMessage>>,
    ) -> Result<Response<Self::ReplicateStream>, Status> {
        let admitted = self.gate.admit(&request)?;
        let peer = admitted.peer;
        let mut inbound = request.into_inner();
        let hello = frame::hello(inbound.message().await?)?;
        admitted.check_source_id(&hello.source_id)?;
        let out_rx = session::open(self, hello, inbound, peer).await?;
        Ok(Response::new(ReceiverStream::new(out_rx)))
    }
}
