//! The tower service in front of every gRPC service of the listener: API-key check, the
//! size-limit status, and the metrics of every call (method × status code), including calls
//! refused before the core ran (no key, message too big, a method chorus does not serve).
//!
//! It works on the HTTP/2 request and response: the method comes from the path, the status of
//! an unsuccessful unary call from the `grpc-status` header (tonic answers every error
//! "trailers-only", so the status is in the headers), and a response without that header is a
//! success (its status 0 travels in the trailers).

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use chorus_core::api::{Method, UNKNOWN_METHOD_LABEL};
use chorus_core::metrics as core_metrics;
use futures_util::future::BoxFuture;
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::server::NamedService;
use tonic::{Code, Status};

use super::status::code_label;
use crate::api::{apikey_of_authorization, key_matches};
use crate::metrics;

/// Metric label of calls to the reflection services.
pub const REFLECTION_LABEL: &str = "reflection";

/// The gRPC method names of the served methods (`/centrifugal.centrifugo.api.CentrifugoApi/
/// <name>`) and the API method each one is.
pub const METHODS: [(&str, Method); 14] = [
    ("Batch", Method::Batch),
    ("Publish", Method::Publish),
    ("Broadcast", Method::Broadcast),
    ("Subscribe", Method::Subscribe),
    ("Unsubscribe", Method::Unsubscribe),
    ("Disconnect", Method::Disconnect),
    ("Presence", Method::Presence),
    ("PresenceStats", Method::PresenceStats),
    ("History", Method::History),
    ("HistoryRemove", Method::HistoryRemove),
    ("Info", Method::Info),
    ("RPC", Method::Rpc),
    ("Refresh", Method::Refresh),
    ("Channels", Method::Channels),
];

/// The API method of a request path, `None` for anything else.
pub fn method_of(path: &str) -> Option<Method> {
    let (service, name) = path.strip_prefix('/')?.split_once('/')?;
    if service != chorus_proto::api::centrifugo_api_server::SERVICE_NAME {
        return None;
    }
    METHODS.iter().find(|(n, _)| *n == name).map(|(_, m)| *m)
}

/// The `method` label of a request path.
fn label_of(path: &str) -> &'static str {
    if let Some(method) = method_of(path) {
        return method.name();
    }
    if path.starts_with("/grpc.reflection.") {
        return REFLECTION_LABEL;
    }
    UNKNOWN_METHOD_LABEL
}

/// Set by the service once the call reached the core's typed API: a failure after that was
/// counted by the core; one before (the request did not decode, the method is not served)
/// is counted here, as the HTTP API counts its 400s and 404s.
#[derive(Debug, Clone, Default)]
pub struct Reached(Arc<AtomicBool>);

impl Reached {
    pub fn mark(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct Settings {
    /// Empty: no authentication.
    key: String,
    /// `grpc_api.max_receive_message_size`, for the message of the status.
    max_receive_message_size: usize,
}

/// Wraps a gRPC service (the API, reflection) with the key check and the metrics.
#[derive(Debug, Clone)]
pub struct Guard<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> Guard<S> {
    pub fn new(inner: S, key: &str, max_receive_message_size: usize) -> Self {
        Guard {
            inner,
            settings: Arc::new(Settings {
                key: key.to_owned(),
                max_receive_message_size,
            }),
        }
    }
}

impl<S: NamedService> NamedService for Guard<S> {
    const NAME: &'static str = S::NAME;
}

/// The status of a trailers-only response, `None` for a response whose status is in its
/// trailers (a success, for a unary call).
fn status_of(response: &http::Response<Body>) -> Option<Status> {
    Status::from_header_map(response.headers())
}

/// tonic refuses a message over the decoding limit with OUT_OF_RANGE; grpc-go (Centrifugo)
/// answers RESOURCE_EXHAUSTED, which is also what the gRPC spec names for it. A failure
/// before the core ran cannot be the API's own 112 → OUT_OF_RANGE.
fn too_large(status: &Status) -> bool {
    status.code() == Code::OutOfRange && status.message().contains("message length too large")
}

impl<S> Service<http::Request<Body>> for Guard<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let started = Instant::now();
        let label = label_of(request.uri().path());
        let known = method_of(request.uri().path()).is_some();
        let settings = self.settings.clone();
        if !settings.key.is_empty() {
            let presented = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(apikey_of_authorization);
            if !key_matches(presented, &settings.key) {
                let status = Status::unauthenticated("invalid or missing API key");
                core_metrics::api_error(label, "grpc_unauthenticated".to_owned());
                metrics::grpc_api_request(label, code_label(status.code()), started.elapsed());
                return Box::pin(std::future::ready(Ok(status.into_http())));
            }
        }
        let reached = Reached::default();
        request.extensions_mut().insert(reached.clone());
        // The clone that was made ready is the one called (tower's contract).
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        Box::pin(async move {
            let mut response = inner.call(request).await?;
            let mut code = Code::Ok;
            if let Some(status) = status_of(&response) {
                code = status.code();
                if !reached.get() {
                    if too_large(&status) {
                        let refused = Status::resource_exhausted(format!(
                            "request message larger than grpc_api.max_receive_message_size \
                             ({} bytes)",
                            settings.max_receive_message_size
                        ));
                        code = refused.code();
                        response = refused.into_http();
                    }
                    if code != Code::Ok {
                        if known {
                            core_metrics::api_request(label, None);
                        }
                        core_metrics::api_error(label, format!("grpc_{}", code_label(code)));
                    }
                }
            }
            metrics::grpc_api_request(label, code_label(code), started.elapsed());
            Ok(response)
        })
    }
}
