//! The server entry point: [`serve`] runs one replica on already bound listeners until the
//! shutdown future resolves.
//!
//! Served on the gRPC listener: `chorus.presence.v1.Presence` behind the key check, and
//! `grpc.health.v1.Health` (tonic-health, no key: Kubernetes probes send none) — the overall
//! service `""` is SERVING while the process runs, `chorus.presence.v1.Presence` only after the
//! warm-up (readiness). On the metrics listener: `GET /metrics` (Prometheus text).

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use chorus_proto::presence::presence_server::PresenceServer;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::auth::ApiKeyCheck;
use crate::config::ServiceConfig;
use crate::metrics as m;
use crate::service::PresenceService;

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("presence_server.key is empty: every call would be refused")]
    NoKey,
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The sockets a replica serves on.
#[derive(Debug)]
pub struct Listeners {
    /// The gRPC API (`presence_server.port`).
    pub grpc: TcpListener,
    /// `/metrics` (`presence_server.metrics_port`) with what renders them; `None`: no metrics
    /// endpoint.
    pub metrics: Option<(TcpListener, MetricsRender)>,
}

/// Renders the Prometheus text of `/metrics` (the binary adds the `process_*` families to
/// the recorder's output).
#[derive(Clone)]
pub struct MetricsRender(std::sync::Arc<dyn Fn() -> String + Send + Sync>);

impl MetricsRender {
    pub fn new(render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        MetricsRender(std::sync::Arc::new(render))
    }

    /// The recorder's families alone.
    pub fn of(handle: PrometheusHandle) -> Self {
        MetricsRender::new(move || handle.render())
    }

    pub fn render(&self) -> String {
        (self.0)()
    }
}

impl std::fmt::Debug for MetricsRender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsRender")
    }
}

/// gRPC service name of the presence API, as reported by the health service.
pub const SERVICE_NAME: &str = <PresenceServer<PresenceService> as NamedService>::NAME;

/// Runs a replica until `shutdown` resolves, then ends every stream and watcher (gateways
/// reconnect to other replicas), waits up to `config.shutdown_timeout` for them and returns.
pub async fn serve(
    listeners: Listeners,
    config: ServiceConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    if config.key.is_empty() {
        return Err(ServeError::NoKey);
    }
    let service = PresenceService::new(config.clone());
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
        .await;
    metrics::gauge!(m::READY).set(0.0);

    let stop = CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    {
        let service = service.clone();
        tasks.spawn(async move { service.run_leases().await });
    }
    {
        let reporter = reporter.clone();
        let ready_at = service.ready_at();
        let stop = stop.clone();
        tasks.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep_until(ready_at) => {
                    reporter.set_service_status(SERVICE_NAME, ServingStatus::Serving).await;
                    metrics::gauge!(m::READY).set(1.0);
                    tracing::info!("presence replica ready: warm-up over");
                }
            }
        });
    }
    if let Some((listener, handle)) = listeners.metrics {
        let stop = stop.clone();
        tasks.spawn(serve_metrics(listener, handle, stop, tasks.clone()));
    }

    let api = InterceptedService::new(
        PresenceServer::new(service.clone()).max_decoding_message_size(config.max_message_size),
        ApiKeyCheck::new(&config.key),
    );
    let incoming = TcpIncoming::from(listeners.grpc).with_nodelay(Some(true));
    let signal = {
        let service = service.clone();
        let stop = stop.clone();
        let reporter = reporter.clone();
        async move {
            shutdown.await;
            tracing::info!("presence replica shutting down");
            reporter
                .set_service_status("", ServingStatus::NotServing)
                .await;
            reporter
                .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
                .await;
            stop.cancel();
            service.shutdown();
        }
    };
    let server = Server::builder()
        .add_service(health)
        .add_service(api)
        .serve_with_incoming_shutdown(incoming, signal);
    tokio::pin!(server);
    let grace = config.shutdown_timeout;
    let result = tokio::select! {
        r = &mut server => r,
        _ = async { stop.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(?grace, "streams did not close in time; stopping anyway");
            Ok(())
        }
    };
    stop.cancel();
    service.shutdown();
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(1), tasks.wait()).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), service.wait()).await;
    result.map_err(ServeError::from)
}

/// A minimal HTTP/1.1 server: `GET /metrics` renders the registry, anything else is 404.
async fn serve_metrics(
    listener: TcpListener,
    handle: MetricsRender,
    stop: CancellationToken,
    tasks: tokio_util::task::TaskTracker,
) {
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let handle = handle.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let handle = handle.clone();
                async move {
                    let response =
                        if req.method() == hyper::Method::GET && req.uri().path() == "/metrics" {
                            hyper::Response::builder()
                                .header("content-type", "text/plain; version=0.0.4")
                                .body(Full::new(Bytes::from(handle.render())))
                        } else {
                            hyper::Response::builder()
                                .status(404)
                                .body(Full::new(Bytes::from_static(b"not found\n")))
                        };
                    Ok::<_, Infallible>(response.unwrap_or_default())
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = &mut conn => {}
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
                }
            }
        });
    }
}
