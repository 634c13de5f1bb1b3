//! Backend hooks through the transport-facing API, with a fake backend in the process: what
//! each hook is asked, and what the client sees for every kind of answer and failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chorus_core::clock::unix_now;
use chorus_core::disconnect::Disconnect;
use chorus_core::duration::ConfigDuration;
use chorus_core::options::{ChannelOptions, Namespace, NodeOptions, RpcNamespace, RpcOptions};
use chorus_core::proxy::*;
use chorus_core::Node;
use chorus_protocol::Protocol;
use common::*;

/// What the fake backend was asked: (event, user, channel or method, data, meta).
type Seen = Arc<Mutex<Vec<(String, String, String, String, Option<String>)>>>;

/// A backend whose answers depend on the request's channel, method or data.
#[derive(Default)]
struct Backend {
    seen: Seen,
    /// `expire_at` the refresh hook grants (0: answers `expired`).
    refresh_to: Mutex<i64>,
    delay: Duration,
}

fn text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn error(code: u32, message: &str) -> HookError {
    HookError {
        code,
        message: message.into(),
        temporary: false,
    }
}

impl Backend {
    fn record(&self, event: &str, caller: &Caller, what: &str, data: &Bytes) {
        self.seen.lock().unwrap().push((
            event.into(),
            caller.user.to_string(),
            what.into(),
            text(data),
            caller.meta.as_ref().map(text),
        ));
    }
}

#[async_trait]
impl Proxy for Backend {
    async fn connect(&self, req: &ConnectRequest) -> Result<HookReply<ConnectResult>, ProxyError> {
        tokio::time::sleep(self.delay).await;
        let what = format!("{}|{}", req.name, req.channels.join(","));
        self.record("connect", &req.caller, &what, &req.data);
        let d = text(&req.data);
        Ok(match d.as_str() {
            r#""error""# => HookReply::Error(error(4001, "go away")),
            r#""disconnect""# => HookReply::Disconnect(Disconnect::new(4501, "banned")),
            r#""nothing""# => HookReply::Result(None),
            r#""expired""# => HookReply::Result(Some(ConnectResult {
                user: "42".into(),
                expire_at: unix_now() - 10,
                ..Default::default()
            })),
            r#""down""# => return Err(ProxyError::Unavailable("connection refused".into())),
            r#""garbage""# => return Err(ProxyError::BadResponse("not JSON".into())),
            r#""short""# => HookReply::Result(Some(ConnectResult {
                user: "42".into(),
                expire_at: unix_now() + 1,
                ..Default::default()
            })),
            _ => HookReply::Result(Some(ConnectResult {
                user: "42".into(),
                expire_at: 0,
                info: Bytes::from_static(br#"{"name":"alice"}"#),
                data: Bytes::from_static(br#"{"welcome":true}"#),
                channels: vec!["news:hello".into()],
                subs: HashMap::new(),
                meta: Some(Bytes::from_static(br#"{"plan":"gold"}"#)),
            })),
        })
    }

    async fn refresh(&self, req: &RefreshRequest) -> Result<HookReply<RefreshResult>, ProxyError> {
        self.record("refresh", &req.caller, "", &Bytes::new());
        let to = *self.refresh_to.lock().unwrap();
        Ok(HookReply::Result(Some(RefreshResult {
            expired: to == 0,
            expire_at: to,
            info: Some(Bytes::from_static(br#"{"name":"refreshed"}"#)),
            meta: None,
        })))
    }

    async fn subscribe(
        &self,
        req: &SubscribeRequest,
    ) -> Result<HookReply<SubscribeResult>, ProxyError> {
        self.record("subscribe", &req.caller, &req.channel, &req.data);
        Ok(match req.channel.as_str() {
            "hooked:no" => HookReply::Error(error(4030, "not a member")),
            "hooked:down" => return Err(ProxyError::Timeout),
            "hooked:short" => HookReply::Result(Some(SubscribeResult {
                expire_at: unix_now() + 1,
                ..Default::default()
            })),
            _ => HookReply::Result(Some(SubscribeResult {
                info: Bytes::from_static(br#"{"role":"admin"}"#),
                data: Bytes::from_static(br#"{"motd":"hi"}"#),
                ..Default::default()
            })),
        })
    }

    async fn publish(&self, req: &PublishRequest) -> Result<HookReply<PublishResult>, ProxyError> {
        self.record("publish", &req.caller, &req.channel, &req.data);
        let d = text(&req.data);
        Ok(if d.contains("reject") {
            HookReply::Error(error(4003, "moderated"))
        } else if d.contains("upper") {
            HookReply::Result(Some(PublishResult {
                data: Some(Bytes::from(d.to_uppercase())),
                ..Default::default()
            }))
        } else if d.contains("nohistory") {
            HookReply::Result(Some(PublishResult {
                skip_history: true,
                ..Default::default()
            }))
        } else if d.contains("compress") {
            HookReply::Result(Some(PublishResult {
                delta: true,
                ..Default::default()
            }))
        } else if d.contains("notjson") {
            HookReply::Result(Some(PublishResult {
                data: Some(Bytes::from_static(b"not json")),
                ..Default::default()
            }))
        } else {
            HookReply::Result(None)
        })
    }

    async fn rpc(&self, req: &RpcRequest) -> Result<HookReply<RpcResult>, ProxyError> {
        tokio::time::sleep(self.delay).await;
        self.record("rpc", &req.caller, &req.method, &req.data);
        Ok(match req.method.as_str() {
            "fail" => return Err(ProxyError::Unavailable("refused".into())),
            "deny" => HookReply::Error(error(4040, "no such thing")),
            "kick" => HookReply::Disconnect(Disconnect::new(4000, "kicked")),
            _ => HookReply::Result(Some(RpcResult {
                data: Bytes::from(format!(r#"{{"echo":{}}}"#, text(&req.data))),
            })),
        })
    }

    async fn sub_refresh(
        &self,
        req: &SubRefreshRequest,
    ) -> Result<HookReply<SubRefreshResult>, ProxyError> {
        self.record("sub_refresh", &req.caller, &req.channel, &Bytes::new());
        Ok(HookReply::Result(Some(SubRefreshResult {
            expired: true,
            ..Default::default()
        })))
    }
}

fn hooked_options() -> NodeOptions {
    let mut o = options();
    o.channel.namespaces.push(Namespace {
        name: "hooked".into(),
        options: ChannelOptions {
            presence: true,
            allow_presence_for_subscriber: true,
            subscribe_proxy_enabled: true,
            sub_refresh_proxy_enabled: true,
            ..Default::default()
        },
    });
    o.channel.namespaces.push(Namespace {
        name: "pubhook".into(),
        options: ChannelOptions {
            history_size: 10,
            history_ttl: ConfigDuration::from_secs(60),
            allow_subscribe_for_client: true,
            allow_history_for_subscriber: true,
            publish_proxy_enabled: true,
            ..Default::default()
        },
    });
    o.channel.namespaces.push(Namespace {
        name: "pubdelta".into(),
        options: ChannelOptions {
            allow_subscribe_for_client: true,
            publish_proxy_enabled: true,
            allowed_delta_types: vec![chorus_core::delta::DeltaType::Fossil],
            // Not consulted on the hook path.
            delta_publish: true,
            ..Default::default()
        },
    });
    o.rpc.ping.enabled = true;
    o.rpc.without_namespace.proxy_enabled = true;
    o.rpc.namespaces = vec![RpcNamespace {
        name: "off".into(),
        options: RpcOptions::default(),
    }];
    o
}

/// A node whose every hook is `backend` with `timeout`; `refresh` enables the refresh hook.
fn hooked_node(backend: Arc<Backend>, timeout: Duration, refresh: bool) -> Node {
    let node = node_with(hooked_options());
    let handle = ProxyHandle::new("fake", backend, timeout, 0);
    let mut p = Proxies::default();
    p.set_connect(handle.clone());
    if refresh {
        p.set_refresh(handle.clone());
    }
    for event in [
        ProxyEvent::Subscribe,
        ProxyEvent::Publish,
        ProxyEvent::SubRefresh,
        ProxyEvent::Rpc,
    ] {
        p.insert(event, ProxyName::Default, handle.clone());
    }
    assert!(node.set_proxies(p));
    node
}

/// Connects without a token; the connect hook answers according to `data`.
async fn connect_with(node: &Node, data: &str) -> TestClient {
    let c = TestClient::new(node, Protocol::Json);
    c.send(&format!(
        r#"{{"id":1,"connect":{{"data":{data},"name":"js","subs":{{"chat:b":{{}},"chat:a":{{}}}}}}}}"#
    ))
    .await;
    c
}

fn seen(b: &Backend, event: &str) -> Vec<(String, String, String, String, Option<String>)> {
    let seen = b.seen.lock().unwrap();
    seen.iter().filter(|s| s.0 == event).cloned().collect()
}

#[tokio::test]
async fn connect_without_a_token_goes_to_the_connect_hook() {
    let backend = Arc::new(Backend::default());
    let node = hooked_node(backend.clone(), Duration::from_secs(1), false);
    let mut c = connect_with(&node, r#"{"pass":"x"}"#).await;
    let reply = c.next().await.unwrap().connect.expect("connect reply");
    assert_eq!(&reply.data[..], br#"{"welcome":true}"#);
    assert!(!reply.expires);
    assert_eq!(reply.subs.keys().collect::<Vec<_>>(), ["news:hello"]);
    assert_eq!(&*c.client.user(), "42");
    assert_eq!(
        seen(&backend, "connect"),
        [(
            "connect".into(),
            "".into(),
            "js|chat:a,chat:b".into(),
            r#"{"pass":"x"}"#.into(),
            None
        )]
    );
    // Later hooks carry the user and the meta the connect hook returned.
    c.send(r#"{"id":2,"rpc":{"method":"echo","data":{"n":1}}}"#)
        .await;
    let rpc = c.next().await.unwrap().rpc.expect("rpc reply");
    assert_eq!(&rpc.data[..], br#"{"echo":{"n":1}}"#);
    assert_eq!(
        seen(&backend, "rpc"),
        [(
            "rpc".into(),
            "42".into(),
            "echo".into(),
            r#"{"n":1}"#.into(),
            Some(r#"{"plan":"gold"}"#.into())
        )]
    );
}

#[tokio::test]
async fn connect_hook_answers_map_to_the_documented_outcomes() {
    let backend = Arc::new(Backend::default());
    let node = hooked_node(backend, Duration::from_secs(1), false);

    let mut c = connect_with(&node, r#""error""#).await;
    let e = c.next().await.unwrap().error.unwrap();
    assert_eq!(
        (e.code, e.message.as_str(), e.temporary),
        (4001, "go away", false)
    );
    assert_eq!(c.close_code().await, Some(3000));

    let mut c = connect_with(&node, r#""disconnect""#).await;
    assert_eq!(c.close_code().await, Some(4501));
    assert_eq!(c.closed.as_ref().unwrap().reason, "banned");

    for garbage in [r#""down""#, r#""garbage""#] {
        let mut c = connect_with(&node, garbage).await;
        let e = c.next().await.unwrap().error.unwrap();
        assert_eq!((e.code, e.temporary), (100, true), "{garbage}");
    }

    let mut c = connect_with(&node, r#""expired""#).await;
    assert_eq!(c.next().await.unwrap().error.unwrap().code, 110);

    // No result and not insecure: no credentials at all.
    let mut c = connect_with(&node, r#""nothing""#).await;
    assert_eq!(c.close_code().await, Some(3501));

    // A token never reaches the hook.
    let _ = TestClient::connect(&node, "tokenuser").await;
}

#[tokio::test]
async fn subscribe_hook_allows_with_info_rejects_and_fails() {
    let backend = Arc::new(Backend::default());
    let node = hooked_node(backend.clone(), Duration::from_secs(1), false);
    let mut c = connect_with(&node, "{}").await;
    assert!(c.next().await.unwrap().connect.is_some());

    c.send(r#"{"id":2,"subscribe":{"channel":"hooked:ok","data":{"why":"x"}}}"#)
        .await;
    let sub = c.next().await.unwrap().subscribe.expect("subscribed");
    assert_eq!(&sub.data[..], br#"{"motd":"hi"}"#);
    c.send(r#"{"id":3,"presence":{"channel":"hooked:ok"}}"#)
        .await;
    let presence = c.next().await.unwrap().presence.unwrap().presence;
    let me = presence.values().next().unwrap();
    assert_eq!(&me.chan_info[..], br#"{"role":"admin"}"#);
    assert_eq!(&me.conn_info[..], br#"{"name":"alice"}"#);

    c.send(r#"{"id":4,"subscribe":{"channel":"hooked:no"}}"#)
        .await;
    let e = c.next().await.unwrap().error.unwrap();
    assert_eq!((e.code, e.message.as_str()), (4030, "not a member"));
    c.send(r#"{"id":5,"subscribe":{"channel":"hooked:down"}}"#)
        .await;
    let e = c.next().await.unwrap().error.unwrap();
    assert_eq!((e.code, e.temporary), (100, true));
    // A private channel without a token is refused before the hook.
    c.send(r#"{"id":6,"subscribe":{"channel":"$hooked:x"}}"#)
        .await;
    assert_eq!(c.next().await.unwrap().error.unwrap().code, 103);

    let asked: Vec<(String, String, String)> = seen(&backend, "subscribe")
        .into_iter()
        .map(|s| (s.1, s.2, s.3))
        .collect();
    assert_eq!(
        asked,
        [
            ("42".into(), "hooked:ok".into(), r#"{"why":"x"}"#.into()),
            ("42".into(), "hooked:no".into(), "".into()),
            ("42".into(), "hooked:down".into(), "".into()),
        ]
    );
}

#[tokio::test]
async fn publish_hook_changes_rejects_and_skips_history() {
    let backend = Arc::new(Backend::default());
    let node = hooked_node(backend.clone(), Duration::from_secs(1), false);
    let mut sub = TestClient::connect(&node, "reader").await;
    sub.send(r#"{"id":2,"subscribe":{"channel":"pubhook:room"}}"#)
        .await;
    assert!(sub.next().await.unwrap().subscribe.is_some());
    // Not subscribed, no allow_publish_*: the hook is the only check.
    let mut publisher = TestClient::connect(&node, "writer").await;
    for (id, data) in [
        (2, r#""make me upper""#),
        (3, r#""reject me""#),
        (4, r#""nohistory""#),
        (5, r#""plain""#),
    ] {
        publisher
            .send(&format!(
                r#"{{"id":{id},"publish":{{"channel":"pubhook:room","data":{data}}}}}"#
            ))
            .await;
        let reply = publisher.next().await.unwrap();
        if id == 3 {
            assert_eq!(reply.error.unwrap().code, 4003);
        } else {
            assert!(reply.publish.is_some(), "{reply:?}");
        }
    }
    publisher
        .send(r#"{"id":6,"publish":{"channel":"pubhook:room","data":"notjson"}}"#)
        .await;
    assert_eq!(publisher.next().await.unwrap().error.unwrap().code, 100);
    // No result: the client's data as is.
    publisher
        .send(r#"{"id":7,"publish":{"channel":"pubhook:room","data":{}}}"#)
        .await;
    assert!(publisher.next().await.unwrap().publish.is_some());
    let got = pubs(&sub.drain().await);
    assert_eq!(
        got,
        [
            (1, r#""MAKE ME UPPER""#.into()),
            (0, r#""nohistory""#.into()),
            (2, r#""plain""#.into()),
            (3, "{}".into()),
        ]
    );
    assert_eq!(seen(&backend, "publish").len(), 6);
    assert_eq!(seen(&backend, "publish")[0].1, "writer");
}

#[tokio::test]
async fn publish_hook_result_alone_decides_delta() {
    let backend = Arc::new(Backend::default());
    let node = hooked_node(backend.clone(), Duration::from_secs(1), false);
    let mut sub = TestClient::connect(&node, "reader").await;
    sub.send(r#"{"id":2,"subscribe":{"channel":"pubdelta:room","delta":"fossil"}}"#)
        .await;
    assert!(sub.next().await.unwrap().subscribe.unwrap().delta);
    let mut publisher = TestClient::connect(&node, "writer").await;
    let texts = [
        "compress: a fairly long sentence that repeats itself, version 1",
        "compress: a fairly long sentence that repeats itself, version 2",
        "plain: a fairly long sentence that repeats itself, version 3",
        "plain: a fairly long sentence that repeats itself, version 4",
    ];
    for (id, text) in (10..).zip(texts) {
        publisher
            .send(&format!(
                r#"{{"id":{id},"publish":{{"channel":"pubdelta:room","data":"{text}"}}}}"#
            ))
            .await;
        assert!(publisher.next().await.unwrap().publish.is_some());
    }
    let got: Vec<bool> = sub
        .drain()
        .await
        .iter()
        .filter_map(|r| Some(r.push.as_ref()?.publication.as_ref()?.delta))
        .collect();
    // The hook marked the first two; `delta_publish` does not mark the last two.
    assert_eq!(got, [false, true, false, false]);
}

#[tokio::test]
async fn rpc_routes_to_ping_the_hook_or_the_documented_codes() {
    let backend = Arc::new(Backend::default());
    let node = hooked_node(backend.clone(), Duration::from_secs(1), false);
    let mut c = TestClient::connect(&node, "u").await;
    let call = |id: u32, method: &str| {
        format!(r#"{{"id":{id},"rpc":{{"method":"{method}","data":{{}}}}}}"#)
    };
    for (id, method, code) in [
        (2, "off:x", 108),
        (3, "unknown:x", 104),
        (4, "deny", 4040),
        (5, "fail", 100),
    ] {
        c.send(&call(id, method)).await;
        let e = c.next().await.unwrap().error.unwrap();
        assert_eq!(e.code, code, "{method}");
    }
    c.send(&call(6, "ping")).await;
    let r = c.next().await.unwrap();
    assert!(r.rpc.unwrap().data.is_empty());
    c.send(&call(7, "kick")).await;
    assert_eq!(c.close_code().await, Some(4000));
    let methods: Vec<String> = seen(&backend, "rpc").into_iter().map(|s| s.2).collect();
    assert_eq!(methods, ["deny", "fail", "kick"]);
}

#[tokio::test]
async fn a_slow_hook_times_out_and_never_holds_other_connections() {
    let backend = Arc::new(Backend {
        delay: Duration::from_millis(600),
        ..Default::default()
    });
    let node = hooked_node(backend, Duration::from_millis(300), false);
    let mut slow = TestClient::connect(&node, "a").await;
    let mut other = TestClient::connect(&node, "b").await;
    let started = tokio::time::Instant::now();
    let slow_call = async {
        slow.send(r#"{"id":2,"rpc":{"method":"x","data":{}}}"#)
            .await;
        let e = slow.next().await.unwrap().error.unwrap();
        (e.code, started.elapsed())
    };
    let other_call = async {
        other.send(r#"{"id":2,"rpc":{"method":"ping"}}"#).await;
        assert!(other.next().await.unwrap().rpc.is_some());
        started.elapsed()
    };
    let ((code, slow_took), other_took) = tokio::join!(slow_call, other_call);
    assert_eq!(code, 100);
    assert!(slow_took >= Duration::from_millis(300), "{slow_took:?}");
    assert!(slow_took < Duration::from_millis(600), "{slow_took:?}");
    assert!(other_took < Duration::from_millis(200), "{other_took:?}");
}

#[tokio::test]
async fn refresh_hook_prolongs_or_expires_the_connection() {
    let backend = Arc::new(Backend::default());
    *backend.refresh_to.lock().unwrap() = unix_now() + 3600;
    let node = hooked_node(backend.clone(), Duration::from_secs(1), true);
    let mut c = connect_with(&node, r#""short""#).await;
    let reply = c.next().await.unwrap().connect.unwrap();
    // The server refreshes: the client is not asked to.
    assert!(!reply.expires);
    assert_eq!(reply.ttl, 0);
    // A client refresh is a protocol violation then.
    let mut d = connect_with(&node, r#""short""#).await;
    assert!(d.next().await.unwrap().connect.is_some());
    d.send(r#"{"id":2,"refresh":{"token":"user:42"}}"#).await;
    assert_eq!(d.close_code().await, Some(3501));

    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!c.client.is_closed());
    assert_eq!(seen(&backend, "refresh").len(), 1);
    assert_eq!(seen(&backend, "refresh")[0].1, "42");

    *backend.refresh_to.lock().unwrap() = 0;
    let mut e = connect_with(&node, r#""short""#).await;
    assert!(e.next().await.unwrap().connect.is_some());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(e.close_code().await, Some(3005));
}

#[tokio::test]
async fn sub_refresh_hook_ends_an_expired_subscription() {
    let backend = Arc::new(Backend::default());
    let node = hooked_node(backend.clone(), Duration::from_secs(1), false);
    let mut c = TestClient::connect(&node, "u").await;
    c.send(r#"{"id":2,"subscribe":{"channel":"hooked:short"}}"#)
        .await;
    let sub = c.next().await.unwrap().subscribe.unwrap();
    // Refreshed server-side: no expiry for the client to act on.
    assert!(!sub.expires);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let pushes = c.drain().await;
    let unsub = pushes
        .iter()
        .find_map(|r| r.push.as_ref()?.unsubscribe.clone())
        .expect("unsubscribe push");
    assert_eq!(unsub.code, 2501);
    assert_eq!(seen(&backend, "sub_refresh").len(), 1);
    assert_eq!(seen(&backend, "sub_refresh")[0].2, "hooked:short");
}
