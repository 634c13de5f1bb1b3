//! A session on a fallback transport is a session like any other, on `http_stream` and `sse`
//! alike: the slow-client bound (3008), pings whose pongs come back through `/emulation`
//! (3012 without them), the per-connection command limits (same answers as on WebSocket) and
//! token expiry (3005 unless refreshed through `/emulation`).
//!
//! The process-wide counters asserted exactly here (3008) are produced by one test only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chorus_core::api::{PresenceRequest, PublishRequest};
use chorus_core::duration::ConfigDuration;
use common::emu::{disconnect_code, EmuClient, Transport, TRANSPORTS};
use common::*;
use serde_json::{json, Value};

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn subscribe(c: &mut EmuClient, id: u32, channel: &str) {
    let cmd = json!({"id": id, "subscribe": {"channel": channel}}).to_string();
    assert_eq!(c.send(&cmd).await, 204);
    let reply = c.until(|v| v["id"] == id).await.pop().unwrap();
    assert!(reply.get("error").is_none(), "{reply}");
}

async fn presence_clients(server: &TestServer, channel: &str) -> Vec<String> {
    let req = PresenceRequest {
        channel: channel.into(),
    };
    let result = server.node.api().presence(req).await.unwrap();
    let mut clients: Vec<String> = result.presence.into_keys().collect();
    clients.sort();
    clients
}

/// The `n` of a publication pushed on `channel`.
fn pub_n(v: &Value, channel: &str) -> Option<usize> {
    (v["push"]["channel"] == channel)
        .then(|| v["push"]["pub"]["data"]["n"].as_u64())
        .flatten()
        .map(|n| n as usize)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_stream_is_closed_with_3008_and_a_reading_one_gets_everything() {
    let mut config = test_config();
    config.client.options.queue_max_size = 64 * 1024;
    // Long enough that the unread stream's blocked write does not end it first: the session
    // must end by the queue bound, as a WebSocket one does.
    config.http_server.request_timeout = ConfigDuration::from_secs(60);
    let server = TestServer::start(config).await;
    let slow_before = metric("chorus_client_slow_total");
    let code_before = metric("chorus_client_disconnects_total{code=\"3008\"}");
    for transport in TRANSPORTS {
        slow_case(&server, transport).await;
    }
    // One 3008 per transport, nothing else in this binary closes a client as slow.
    assert_eq!(metric("chorus_client_slow_total") - slow_before, 2.0);
    assert_eq!(
        metric("chorus_client_disconnects_total{code=\"3008\"}") - code_before,
        2.0
    );
    server.stop().await.unwrap();
}

async fn slow_case(server: &TestServer, transport: Transport) {
    let channel = format!("chat:slow_{}", transport.label());
    let channel = channel.as_str();
    let mut fast = EmuClient::open(server.addr, transport).await;
    subscribe(&mut fast, 2, channel).await;
    let mut slow = EmuClient::open(server.addr, transport).await;
    subscribe(&mut slow, 2, channel).await;
    let mut both = vec![fast.client.clone(), slow.client.clone()];
    both.sort();
    assert_eq!(presence_clients(server, channel).await, both);
    let slow_before = metric("chorus_client_slow_total");

    // 2 KB publications until the slow session is cut off (then 20 more), the publisher at most
    // 16 publications (32 KB) ahead of the reading client so that it never nears its bound.
    const MAX: usize = 20_000;
    const AHEAD: usize = 16;
    let progress = Arc::new(AtomicUsize::new(0));
    let reader_progress = progress.clone();
    let ch = channel.to_owned();
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        loop {
            let v = fast
                .next()
                .await
                .unwrap_or_else(|| panic!("the reading stream ended after {:?}", seen.last()));
            assert_eq!(disconnect_code(&v), None, "the reading client was closed");
            if v["push"]["pub"]["data"]["end"] == true {
                return (seen, fast);
            }
            if let Some(n) = pub_n(&v, &ch) {
                seen.push(n);
                reader_progress.store(seen.len(), Ordering::Release);
            }
        }
    });
    let pad = "x".repeat(2000);
    let mut cut_at = None;
    let mut published = 0;
    while published < MAX && cut_at.is_none_or(|at| published < at + 20) {
        let data = Bytes::from(format!("{{\"n\":{published},\"pad\":\"{pad}\"}}"));
        let req = PublishRequest::new(channel, data);
        server.node.api().publish(req).await.unwrap();
        published += 1;
        while published >= progress.load(Ordering::Acquire) + AHEAD && !reader.is_finished() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if cut_at.is_none() && metric("chorus_client_slow_total") > slow_before {
            cut_at = Some(published);
        }
    }
    assert!(
        cut_at.is_some(),
        "{transport:?}: {MAX} publications never overflowed the queue"
    );
    let end = PublishRequest::new(channel, Bytes::from_static(b"{\"end\":true}"));
    server.node.api().publish(end).await.unwrap();
    let (seen, fast) = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("the reading client never saw the end")
        .unwrap();
    assert_eq!(
        seen,
        (0..published).collect::<Vec<_>>(),
        "{transport:?}: the reading client got every publication in order"
    );

    // The slow session is gone from the node and from presence (its leave), although its
    // stream is still blocked on the unread socket.
    let fast_only = vec![fast.client.clone()];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while presence_clients(server, channel).await != fast_only {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{transport:?}: the slow session is still present"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for("slow session still on the node", || {
        server.node.num_clients() == 1
    })
    .await;

    // What the slow client finds when it reads at last: a prefix of the publications, then
    // the disconnect push 3008, then the end of the stream.
    let rest = tokio::time::timeout(Duration::from_secs(20), slow.rest())
        .await
        .expect("the slow stream never ended");
    let (last, pubs) = rest.split_last().expect("nothing on the slow stream");
    assert_eq!(disconnect_code(last), Some(3008), "{transport:?}: {last}");
    assert_eq!(last["push"]["disconnect"]["reason"], "slow");
    // Its own join (the namespace pushes join/leave) may come after its subscribe reply.
    let pubs: Vec<&Value> = pubs
        .iter()
        .filter(|v| v["push"]["join"].is_null())
        .collect();
    let got: Vec<usize> = pubs.iter().filter_map(|v| pub_n(v, channel)).collect();
    assert_eq!(got.len(), pubs.len(), "only publications before the push");
    assert_eq!(got, (0..got.len()).collect::<Vec<_>>(), "{transport:?}");
    assert!(
        got.len() < published,
        "{transport:?}: the slow client lost nothing?"
    );
    drop(fast);
    wait_for("the reading session did not end", || {
        server.node.num_clients() == 0
    })
    .await;
}

#[tokio::test]
async fn pings_flow_on_the_stream_and_pongs_come_back_through_emulation() {
    let mut config = test_config();
    config.client.options.ping_interval = ConfigDuration::from_secs(1);
    config.client.options.pong_timeout = ConfigDuration::from_millis(500);
    let server = TestServer::start(config).await;
    let addr = server.addr;
    let cases = TRANSPORTS.map(|transport| async move {
        // A client answering three pings stays; one that never answers is closed with 3012.
        let mut answering = EmuClient::open(addr, transport).await;
        let mut silent = EmuClient::open(addr, transport).await;
        assert_eq!(answering.connect["connect"]["ping"], 1);
        assert_eq!(answering.connect["connect"]["pong"], true);
        let silent_task = tokio::spawn(async move {
            let first = silent.next().await.unwrap();
            assert_eq!(first, json!({}), "{transport:?}: a ping");
            let second = silent.next().await.unwrap();
            assert_eq!(
                disconnect_code(&second),
                Some(3012),
                "{transport:?}: {second}"
            );
            assert_eq!(second["push"]["disconnect"]["reason"], "no pong");
            assert_eq!(silent.next().await, None, "{transport:?}: the stream ends");
        });
        for _ in 0..3 {
            let ping = answering.next().await.unwrap();
            assert_eq!(ping, json!({}), "{transport:?}");
            assert_eq!(answering.send("{}").await, 204);
        }
        silent_task.await.unwrap();
        // Still connected after three intervals: one more command is answered.
        let cmd = r#"{"id":2,"presence_stats":{"channel":"chat:pings"}}"#;
        assert_eq!(answering.send(cmd).await, 204);
        let reply = answering.until(|v| v["id"] == 2).await.pop().unwrap();
        assert!(reply["presence_stats"].is_object(), "{reply}");
        answering
    });
    let [a, b] = cases;
    let (a, b) = tokio::join!(a, b);
    assert_eq!(server.node.num_clients(), 2, "the answering clients stay");
    drop((a, b));
    server.stop().await.unwrap();
}

/// One batch of commands: two subscribes over `client.channel_limit` 1, then presence calls
/// past the command bucket; the answers, as (id, error code) and the disconnect code at the
/// end, from a WebSocket and from each fallback transport must be the same.
const LIMITED: &str = concat!(
    r#"{"id":2,"subscribe":{"channel":"chat:lim1"}}"#,
    "\n",
    r#"{"id":3,"subscribe":{"channel":"chat:lim2"}}"#,
    "\n",
    r#"{"id":4,"presence_stats":{"channel":"chat:lim1"}}"#,
    "\n",
    r#"{"id":5,"presence_stats":{"channel":"chat:lim1"}}"#,
    "\n",
    r#"{"id":6,"presence_stats":{"channel":"chat:lim1"}}"#,
    "\n",
    r#"{"id":7,"presence_stats":{"channel":"chat:lim1"}}"#,
);

/// (id, error code or 0) of every reply, then the disconnect code (0: none).
fn outcome(msgs: &[Value]) -> (Vec<(u64, u64)>, u64) {
    let replies = msgs
        .iter()
        .filter(|v| v["id"].as_u64().is_some_and(|id| id > 1))
        .map(|v| {
            let code = v["error"]["code"].as_u64().unwrap_or(0);
            (v["id"].as_u64().unwrap(), code)
        })
        .collect();
    let code = msgs.iter().find_map(disconnect_code).unwrap_or(0);
    (replies, code)
}

#[tokio::test]
async fn command_limits_answer_as_on_websocket() {
    let mut config = test_config();
    config.client.options.channel_limit = 1;
    // connect, 2 subscribes, 1 presence_stats: the bucket is empty; then 2 refusals (111)
    // and the third in a row closes the connection (3013).
    config.client.options.command_rate_limit.rate = 1;
    config.client.options.command_rate_limit.burst = 4;
    config.client.options.command_rate_limit.disconnect_after = 3;
    let server = TestServer::start(config).await;
    let expected = (vec![(2, 0), (3, 106), (4, 0), (5, 111), (6, 111)], 3013);

    let (_, _, ws) = RawWs::connect(server.addr, "/connection/websocket", &[])
        .await
        .unwrap();
    let mut ws = ws.unwrap();
    ws.send_text(&format!("{{\"id\":1,\"connect\":{{}}}}\n{LIMITED}"))
        .await;
    let mut msgs = Vec::new();
    let close = loop {
        let f = ws.read_data().await.expect("no close frame");
        if f.opcode == OP_CLOSE {
            break u64::from(u16::from_be_bytes([f.payload[0], f.payload[1]]));
        }
        for line in String::from_utf8(f.payload).unwrap().split('\n') {
            msgs.push(serde_json::from_str::<Value>(line).unwrap());
        }
    };
    let (replies, _) = outcome(&msgs);
    assert_eq!((replies, close), expected, "websocket");

    for transport in TRANSPORTS {
        let mut c = EmuClient::open(server.addr, transport).await;
        assert_eq!(c.send(LIMITED).await, 204);
        let msgs = c.rest().await;
        assert_eq!(outcome(&msgs), expected, "{transport:?}: {msgs:?}");
    }
    wait_for("sessions left", || server.node.num_clients() == 0).await;
    server.stop().await.unwrap();
}

const SECRET: &str = "emulation-test-secret-0123456789abcdef";

fn token(sub: &str, exp_in: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": sub, "exp": now + exp_in}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn expiring_token_is_refreshed_through_emulation_or_closed_with_3005() {
    let mut config = test_config();
    config.client.options.insecure = false;
    config.client.token.hmac_secret_key = SECRET.into();
    config.client.options.expired_close_delay = ConfigDuration::from_millis(200);
    let server = TestServer::start(config).await;
    let addr = server.addr;
    let cases = TRANSPORTS.map(|transport| async move {
        let connect =
            |user: &str| json!({"id": 1, "connect": {"token": token(user, 2)}}).to_string();
        let mut stale = EmuClient::open_with(addr, transport, &connect("stale")).await;
        let mut fresh = EmuClient::open_with(addr, transport, &connect("fresh")).await;
        for c in [&stale, &fresh] {
            assert_eq!(c.connect["connect"]["expires"], true, "{transport:?}");
            let ttl = c.connect["connect"]["ttl"].as_u64().unwrap();
            assert!((1..=2).contains(&ttl), "{transport:?}: {}", c.connect);
        }
        let refresh = json!({"id": 2, "refresh": {"token": token("fresh", 60)}}).to_string();
        assert_eq!(fresh.send(&refresh).await, 204);
        let reply = fresh.until(|v| v["id"] == 2).await.pop().unwrap();
        assert_eq!(reply["refresh"]["expires"], true, "{reply}");
        let ttl = reply["refresh"]["ttl"].as_u64().unwrap();
        assert!((59..=60).contains(&ttl), "{reply}");

        // The stale one: its token's 2 s and the 200 ms grace pass, then 3005.
        let msgs = tokio::time::timeout(Duration::from_secs(5), stale.rest())
            .await
            .expect("the expired session was not closed");
        assert_eq!(msgs.len(), 1, "{transport:?}: {msgs:?}");
        assert_eq!(disconnect_code(&msgs[0]), Some(3005), "{msgs:?}");
        // The refreshed one lives on past that point: one more command is answered.
        let refresh = json!({"id": 3, "refresh": {"token": token("fresh", 60)}}).to_string();
        assert_eq!(fresh.send(&refresh).await, 204);
        let reply = fresh.until(|v| v["id"] == 3).await.pop().unwrap();
        assert!(reply.get("error").is_none(), "{reply}");
        fresh
    });
    let [a, b] = cases;
    let (a, b) = tokio::join!(a, b);
    assert_eq!(server.node.num_clients(), 2);
    drop((a, b));
    server.stop().await.unwrap();
}
