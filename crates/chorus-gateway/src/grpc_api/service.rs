//! The `CentrifugoApi` service: each RPC maps its request onto the core's typed API
//! ([`ServerApi`]), calls it, and answers the result — or the API error, inside the response
//! (body mode) or as a status (transport mode, see [`super::status`]).

use chorus_core::api::ServerApi;
use chorus_core::ApiError;
use chorus_proto::api::{self, centrifugo_api_server::CentrifugoApi};
use tonic::{Request, Response, Status};

use super::convert;
use super::guard::Reached;
use super::status::{mode_of, to_proto, to_status};
use crate::config::GrpcErrorMode;

/// The service of one node.
#[derive(Debug, Clone)]
pub struct GrpcApi {
    api: ServerApi,
    /// `grpc_api.error_mode`.
    error_mode: GrpcErrorMode,
}

impl GrpcApi {
    pub fn new(api: ServerApi, error_mode: GrpcErrorMode) -> Self {
        GrpcApi { api, error_mode }
    }

    /// The call's error mode and its message; marks the call as having reached the core.
    fn open<T>(&self, request: Request<T>) -> (GrpcErrorMode, T) {
        if let Some(reached) = request.extensions().get::<Reached>() {
            reached.mark();
        }
        (
            mode_of(self.error_mode, request.metadata()),
            request.into_inner(),
        )
    }
}

/// `XResponse { error, result }` of an outcome: the result, or the error in the body (body
/// mode) or as a status (transport mode).
fn respond<R, T>(
    mode: GrpcErrorMode,
    outcome: Result<R, ApiError>,
    make: impl FnOnce(Option<api::Error>, Option<R>) -> T,
) -> Result<Response<T>, Status> {
    match (outcome, mode) {
        (Ok(result), _) => Ok(Response::new(make(None, Some(result)))),
        (Err(e), GrpcErrorMode::Transport) => Err(to_status(&e)),
        (Err(e), GrpcErrorMode::Body) => Ok(Response::new(make(Some(to_proto(&e)), None))),
    }
}

#[tonic::async_trait]
impl CentrifugoApi for GrpcApi {
    /// Never an error of its own: per-command errors are in the replies, in either mode.
    async fn batch(
        &self,
        request: Request<api::BatchRequest>,
    ) -> Result<Response<api::BatchResponse>, Status> {
        let (_, req) = self.open(request);
        match self.api.batch(convert::batch(req)).await {
            Ok(result) => Ok(Response::new(convert::batch_response(result))),
            // `BatchResponse` has no `error` field: a failure of the batch itself (the core
            // has none today) can only be a status.
            Err(e) => Err(to_status(&e)),
        }
    }

    async fn publish(
        &self,
        request: Request<api::PublishRequest>,
    ) -> Result<Response<api::PublishResponse>, Status> {
        let (mode, req) = self.open(request);
        let outcome = self.api.publish(convert::publish(req)).await;
        respond(
            mode,
            outcome.map(convert::publish_result),
            |error, result| api::PublishResponse { error, result },
        )
    }

    /// Per-channel errors are in `responses`, in either mode; only a failure of the whole call
    /// (no channels, no data) follows the error mode.
    async fn broadcast(
        &self,
        request: Request<api::BroadcastRequest>,
    ) -> Result<Response<api::BroadcastResponse>, Status> {
        let (mode, req) = self.open(request);
        let outcome = self.api.broadcast(convert::broadcast(req)).await;
        respond(
            mode,
            outcome.map(convert::broadcast_result),
            |error, result| api::BroadcastResponse { error, result },
        )
    }

    async fn subscribe(
        &self,
        request: Request<api::SubscribeRequest>,
    ) -> Result<Response<api::SubscribeResponse>, Status> {
        let (mode, req) = self.open(request);
        let outcome = self.api.subscribe(convert::subscribe(req)).await;
        respond(
            mode,
            outcome.map(|_| api::SubscribeResult {}),
            |error, result| api::SubscribeResponse { error, result },
        )
    }

    async fn unsubscribe(
        &self,
        request: Request<api::UnsubscribeRequest>,
    ) -> Result<Response<api::UnsubscribeResponse>, Status> {
        let (mode, req) = self.open(request);
        let outcome = self.api.unsubscribe(convert::unsubscribe(req)).await;
        respond(
            mode,
            outcome.map(|_| api::UnsubscribeResult {}),
            |error, result| api::UnsubscribeResponse { error, result },
        )
    }

    async fn disconnect(
        &self,
        request: Request<api::DisconnectRequest>,
    ) -> Result<Response<api::DisconnectResponse>, Status> {
        let (mode, req) = self.open(request);
        let outcome = self.api.disconnect(convert::disconnect(req)).await;
        respond(
            mode,
            outcome.map(|_| api::DisconnectResult {}),
            |error, result| api::DisconnectResponse { error, result },
        )
    }

    async fn presence(
        &self,
        request: Request<api::PresenceRequest>,
    ) -> Result<Response<api::PresenceResponse>, Status> {
        let (mode, req) = self.open(request);
        let outcome = self.api.presence(convert::presence(req)).await;
        respond(
            mode,
            outcome.map(convert::presence_result),
            |error, result| api::PresenceResponse { error, result },
        )
    }

    async fn presence_stats(
        &self,
        request: Request<api::PresenceStatsRequest>,
    ) -> Result<Response<api::PresenceStatsResponse>, Status> {
        let (mode, req) = self.open(request);
        let outcome = self.api.presence_stats(convert::presence_stats(req)).await;
        respond(
            mode,
            outcome.map(convert::presence_stats_result),
            |error, result| api::PresenceStatsResponse { error, result },
        )
    }

    async fn history(
        &self,
        request: Request<api::HistoryRequest>,
    ) -> Result<Response<api::HistoryResponse>, Status> {
        let (mode, req) = self.open(request);
        let outcome = self.api.history(convert::history(req)).await;
        respond(
            mode,
            outcome.map(convert::history_result),
            |error, result| api::HistoryResponse { error, result },
        )
    }

    async fn history_remove(
        &self,
        request: Request<api::HistoryRemoveRequest>,
    ) -> Result<Response<api::HistoryRemoveResponse>, Status> {
        let (mode, req) = self.open(request);
        let outcome = self.api.history_remove(convert::history_remove(req)).await;
        respond(
            mode,
            outcome.map(|_| api::HistoryRemoveResult {}),
            |error, result| api::HistoryRemoveResponse { error, result },
        )
    }

    async fn info(
        &self,
        request: Request<api::InfoRequest>,
    ) -> Result<Response<api::InfoResponse>, Status> {
        let (mode, _) = self.open(request);
        let outcome = self.api.info(chorus_core::api::InfoRequest {}).await;
        respond(mode, outcome.map(convert::info_result), |error, result| {
            api::InfoResponse { error, result }
        })
    }

    async fn rpc(
        &self,
        request: Request<api::RpcRequest>,
    ) -> Result<Response<api::RpcResponse>, Status> {
        let (mode, req) = self.open(request);
        let outcome = self.api.rpc(convert::rpc(req)).await;
        respond(mode, outcome.map(convert::rpc_result), |error, result| {
            api::RpcResponse { error, result }
        })
    }

    async fn refresh(
        &self,
        request: Request<api::RefreshRequest>,
    ) -> Result<Response<api::RefreshResponse>, Status> {
        let (mode, req) = self.open(request);
        let outcome = self.api.refresh(convert::refresh(req)).await;
        respond(
            mode,
            outcome.map(|_| api::RefreshResult {}),
            |error, result| api::RefreshResponse { error, result },
        )
    }

    async fn channels(
        &self,
        request: Request<api::ChannelsRequest>,
    ) -> Result<Response<api::ChannelsResponse>, Status> {
        let (mode, req) = self.open(request);
        let outcome = self.api.channels(convert::channels(req)).await;
        respond(
            mode,
            outcome.map(convert::channels_result),
            |error, result| api::ChannelsResponse { error, result },
        )
    }
}
