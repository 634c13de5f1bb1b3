//! The gRPC server API, wire-compatible with Centrifugo's: service
//! `centrifugal.centrifugo.api.CentrifugoApi` (`proto/api.proto`), served by tonic on its own
//! listener (`grpc_api.*`). Like the HTTP API it is a thin mapper over the core's typed server
//! API ([`chorus_core::api`]): the same request gets the same answer over both.
//!
//! Parts:
//! * this file — [`bind`] and [`serve`] (listener, reflection, the shutdown sequence);
//! * [`service`] — the `CentrifugoApi` implementation: proto request → typed request →
//!   [`chorus_core::api::ServerApi`] → proto response or error;
//! * [`convert`] — the message mappings both ways;
//! * [`status`] — error modes (`error` in the body, or a gRPC status) and the code map;
//! * [`guard`] — the key check, the size-limit status and the per-method × code metrics, in
//!   front of every service of the listener.
//!
//! Methods of Centrifugo's service that chorus does not serve (its PRO methods, map and
//! shared-poll methods) answer status UNIMPLEMENTED. The reference is `docs/server-api.md`.

pub mod convert;
pub mod guard;
pub mod service;
pub mod status;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use chorus_core::Node;
use chorus_proto::api::centrifugo_api_server::CentrifugoApiServer;
use futures_util::stream;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

use crate::config::Config;
use crate::server::conns::io::Stream;
use crate::server::tls::Tls;
use crate::server::{self, ServeError};
use guard::Guard;
use service::GrpcApi;

/// Pause after a failed `accept` (out of descriptors, …) before the next one, so the loop
/// does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Why the gRPC server could not run.
#[derive(Debug, thiserror::Error)]
pub enum GrpcServeError {
    /// The reflection service could not read the descriptor set (a build defect).
    #[error("grpc_api.reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The server ended with an error.
    #[error("grpc api server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// `http_server.tls` names files that cannot be used.
    #[error("http_server.tls: {0}")]
    Tls(#[from] crate::server::tls::TlsError),
}

/// Binds `grpc_api.address:port` (an empty address is `http_server.address`), with
/// `SO_REUSEADDR` and the HTTP server's backlog.
pub async fn bind(config: &Config) -> Result<TcpListener, ServeError> {
    let host = config.grpc_api.bind_address(&config.http_server);
    server::bind_to(
        "grpc_api.address",
        host,
        config.grpc_api.port,
        config.http_server.tcp_backlog,
    )
    .await
}

/// Accepted connections of `listener`, with `TCP_NODELAY`; a failed accept is logged and
/// retried after [`ACCEPT_BACKOFF`]. With `tls`, each connection's handshake runs in a task of
/// its own (bounded by `handshake_timeout`), so a slow client does not hold up the others,
/// and the listener closes when `stop` fires.
fn incoming(
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
    handshake_timeout: Duration,
    stop: CancellationToken,
) -> futures_util::stream::BoxStream<'static, std::io::Result<Stream>> {
    use futures_util::StreamExt;
    let Some(tls) = tls else {
        return plain(listener).map(|r| r.map(Stream::Plain)).boxed();
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Stream>(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => return,
                a = listener.accept() => a,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "grpc api: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, "set TCP_NODELAY failed");
            }
            let (tls, tx) = (tls.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(handshake_timeout, tls.grpc().accept(stream)).await {
                    Ok(Ok(s)) => {
                        let _ = tx.send(Stream::Tls(Box::new(s))).await;
                    }
                    Ok(Err(error)) => crate::server::tls::handshake_failed(&error),
                    Err(_) => crate::server::tls::handshake_failed(&std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "TLS handshake timed out",
                    )),
                }
            });
        }
    });
    stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|s| (Ok(s), rx)) },
    )
    .boxed()
}

/// Plain TCP connections of `listener`.
fn plain(
    listener: TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<TcpStream>> + Send {
    stream::unfold(listener, |listener| async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%error, "set TCP_NODELAY failed");
                    }
                    return Some((Ok(stream), listener));
                }
                Err(error) => {
                    tracing::warn!(%error, "grpc api: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    })
}

/// Serves the gRPC API of `node` on `listener` until `shutdown` resolves; then stops
/// accepting (the listener is closed at once), lets the calls in flight finish, and returns
/// when they have, or when `shutdown.timeout` (counted from the signal) has passed — the
/// connections still open then are abandoned.
pub async fn serve(
    listener: TcpListener,
    config: Arc<Config>,
    node: Node,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GrpcServeError> {
    let g = &config.grpc_api;
    let limit = g.max_receive_message_size;
    let api = CentrifugoApiServer::new(GrpcApi::new(node.api(), g.error_mode))
        .max_decoding_message_size(limit);
    let mut router = Server::builder().add_service(Guard::new(api, &g.key, limit));
    if g.reflection {
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(chorus_proto::api::FILE_DESCRIPTOR_SET)
        };
        router = router
            .add_service(Guard::new(reflection().build_v1()?, &g.key, limit))
            .add_service(Guard::new(reflection().build_v1alpha()?, &g.key, limit));
    }

    let stop = CancellationToken::new();
    let tls = Tls::from_config(&config.http_server.tls)?;
    let reloads = CancellationToken::new();
    let _stop_reloads = reloads.clone().drop_guard();
    if let Some(tls) = &tls {
        tls.spawn_reloader(config.http_server.tls.reload_interval.get(), reloads);
    }
    let handshake_timeout = config.http_server.header_read_timeout.get();
    let incoming = incoming(listener, tls, handshake_timeout, stop.clone());
    let mut server =
        pin!(router.serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned()));
    tokio::select! {
        // Only an error ends the server before the signal.
        result = server.as_mut() => return result.map_err(GrpcServeError::from),
        () = shutdown => {}
    }
    tracing::info!("grpc api: shutting down: finishing calls in flight");
    stop.cancel();
    let grace = config.shutdown.timeout.get();
    match tokio::time::timeout(grace, server).await {
        Ok(result) => result?,
        Err(_) => tracing::warn!("grpc api: shutdown grace elapsed with calls still in flight"),
    }
    tracing::info!("grpc api: shutdown complete");
    Ok(())
}
