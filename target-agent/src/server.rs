//! The gRPC service: one `Replicate` stream per source. A peer is
//! authenticated and its hello checked before the call is answered, so a
//! bad source gets its error as the call's status; the stream itself is a
//! session (see [`crate::session`]).

use pgferry_proto::wire::{self, replication_server::Replication};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::Gate;
use crate::{frame, session};

/// The replication service.
pub struct ReplicationService {
    /// What a peer must show before its hello is read.
    pub gate: Gate,
    /// What every admitted source's session shares.
    pub sessions: session::Sessions,
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
        let out_rx = session::open(&self.sessions, hello, inbound, peer).await?;
        Ok(Response::new(ReceiverStream::new(out_rx)))
    }
}
