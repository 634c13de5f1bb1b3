#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::options::{RpcConfig, RpcNamespace, RpcOptions, RpcRoute};

/// Answers `rpc` after `delay`, counting calls.
struct Slow {
    delay: Duration,
    calls: AtomicUsize,
}

#[async_trait]
impl Proxy for Slow {
    async fn rpc(&self, req: &RpcRequest) -> Result<HookReply<RpcResult>, ProxyError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        Ok(HookReply::Result(Some(RpcResult {
            data: req.data.clone(),
        })))
    }
}

fn caller() -> Caller {
    Caller {
        client: Arc::from("c1"),
        transport: TRANSPORT_WEBSOCKET,
        protocol: chorus_protocol::Protocol::Json,
        user: Arc::from("u1"),
        meta: None,
        headers: None,
        emulated_headers: None,
    }
}

fn rpc(data: &'static str) -> RpcRequest {
    RpcRequest {
        caller: caller(),
        method: "m".into(),
        data: bytes::Bytes::from_static(data.as_bytes()),
    }
}

#[test]
fn proxy_names_read_and_write_like_centrifugo() {
    let n: ProxyName = serde_json::from_str(r#""default""#).unwrap();
    assert_eq!(n, ProxyName::Default);
    let n: ProxyName = serde_json::from_str(r#""""#).unwrap();
    assert_eq!(n, ProxyName::Default);
    let n: ProxyName = serde_json::from_str(r#""billing""#).unwrap();
    assert_eq!(n, ProxyName::Named(Arc::from("billing")));
    assert_eq!(serde_json::to_string(&n).unwrap(), r#""billing""#);
    assert_eq!(
        serde_json::to_string(&ProxyName::Default).unwrap(),
        r#""default""#
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_past_its_timeout_fails_with_timeout() {
    let slow = Arc::new(Slow {
        delay: Duration::from_secs(5),
        calls: AtomicUsize::new(0),
    });
    let handle = ProxyHandle::new("p", slow.clone(), Duration::from_secs(1), 0);
    let started = Instant::now();
    assert_eq!(handle.rpc(&rpc("1")).await, Err(ProxyError::Timeout));
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    let fast = ProxyHandle::new("q", slow, Duration::from_secs(10), 0);
    let r = fast.rpc(&rpc("2")).await.unwrap();
    assert_eq!(
        r,
        HookReply::Result(Some(RpcResult {
            data: bytes::Bytes::from_static(b"2")
        }))
    );
}

#[tokio::test(start_paused = true)]
async fn calls_over_max_in_flight_wait_for_a_slot_at_most_their_timeout() {
    let slow = Arc::new(Slow {
        delay: Duration::from_secs(5),
        calls: AtomicUsize::new(0),
    });
    // One slot, 1 s timeout, calls that never answer in time: `a` holds the slot until 1 s,
    // `b` waits for it and holds it until 2 s, `c` gives up waiting at 1.002 s without
    // reaching the backend.
    let handle = ProxyHandle::new("p", slow.clone(), Duration::from_secs(1), 1);
    let started = Instant::now();
    let later = |ms: u64, data: &'static str| {
        let handle = handle.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let r = handle.rpc(&rpc(data)).await;
            (r, started.elapsed())
        }
    };
    let (a, b, c) = tokio::join!(later(0, "a"), later(1, "b"), later(2, "c"));
    assert_eq!(a, (Err(ProxyError::Timeout), Duration::from_secs(1)));
    assert_eq!(b, (Err(ProxyError::Timeout), Duration::from_secs(2)));
    assert_eq!(
        c,
        (Err(ProxyError::Overloaded), Duration::from_millis(1002))
    );
    assert_eq!(slow.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn unserved_events_are_unavailable() {
    let slow = Arc::new(Slow {
        delay: Duration::ZERO,
        calls: AtomicUsize::new(0),
    });
    let handle = ProxyHandle::new("p", slow, Duration::from_secs(1), 0);
    let req = RefreshRequest { caller: caller() };
    assert!(matches!(
        handle.refresh(&req).await,
        Err(ProxyError::Unavailable(_))
    ));
}

#[test]
fn registry_finds_proxies_by_event_and_name() {
    let slow: Arc<dyn Proxy> = Arc::new(Slow {
        delay: Duration::ZERO,
        calls: AtomicUsize::new(0),
    });
    let mut p = Proxies::default();
    assert!(p.is_empty());
    let named = ProxyName::from("billing");
    p.insert(
        ProxyEvent::Rpc,
        named.clone(),
        ProxyHandle::new("billing", slow.clone(), Duration::from_secs(1), 0),
    );
    p.insert(
        ProxyEvent::Subscribe,
        ProxyName::Default,
        ProxyHandle::new("channel.proxy.subscribe", slow, Duration::from_secs(1), 0),
    );
    p.set_header_names(vec![
        "Cookie".into(),
        "authorization".into(),
        "cookie".into(),
    ]);
    assert!(!p.is_empty());
    assert_eq!(p.get(ProxyEvent::Rpc, &named).unwrap().label(), "billing");
    assert!(p.get(ProxyEvent::Publish, &named).is_none());
    assert!(p.get(ProxyEvent::Rpc, &ProxyName::Default).is_none());
    assert_eq!(
        p.get(ProxyEvent::Subscribe, &ProxyName::Default)
            .unwrap()
            .label(),
        "channel.proxy.subscribe"
    );
    assert!(p.connect().is_none());
    assert_eq!(p.header_names(), ["authorization", "cookie"]);
}

#[test]
fn rpc_routes_follow_centrifugo() {
    let mut rpc = RpcConfig::default();
    // No handler at all: every method is "not available" (108), even unknown namespaces.
    assert_eq!(rpc.route("x"), RpcRoute::NotAvailable);
    assert_eq!(rpc.route("nope:x"), RpcRoute::NotAvailable);
    rpc.namespaces = vec![
        RpcNamespace {
            name: "billing".into(),
            options: RpcOptions {
                proxy_enabled: true,
                proxy_name: ProxyName::from("pay"),
            },
        },
        RpcNamespace {
            name: "off".into(),
            options: RpcOptions::default(),
        },
    ];
    rpc.ping.enabled = true;
    assert_eq!(rpc.route("ping"), RpcRoute::Ping);
    assert_eq!(
        rpc.route("billing:charge"),
        RpcRoute::Proxy(&ProxyName::from("pay"))
    );
    assert_eq!(rpc.route("nope:x"), RpcRoute::NotFound);
    assert_eq!(rpc.route("off:x"), RpcRoute::NotAvailable);
    assert_eq!(rpc.route("plain"), RpcRoute::NotAvailable);
    rpc.without_namespace.proxy_enabled = true;
    assert_eq!(rpc.route("plain"), RpcRoute::Proxy(&ProxyName::Default));
    assert_eq!(rpc.route(""), RpcRoute::Proxy(&ProxyName::Default));
}
