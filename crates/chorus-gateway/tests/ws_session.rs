//! The v2 client protocol over the real socket (JSON), and the graceful drain.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// A JSON protocol client: splits frames into messages (frames may pack several,
/// newline-separated) and keeps the ones not consumed yet.
struct JsonWs {
    ws: RawWs,
    pending: std::collections::VecDeque<Value>,
}

impl JsonWs {
    async fn next(&mut self) -> Value {
        loop {
            if let Some(v) = self.pending.pop_front() {
                return v;
            }
            let f = self.ws.read_data().await.expect("connection ended");
            assert_eq!(f.opcode, OP_TEXT, "unexpected frame {f:?}");
            for line in String::from_utf8(f.payload).unwrap().split('\n') {
                if !line.is_empty() {
                    self.pending.push_back(serde_json::from_str(line).unwrap());
                }
            }
        }
    }

    /// Messages up to and including the first one matching `pred`.
    async fn until(&mut self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let v = self.next().await;
            let done = pred(&v);
            seen.push(v);
            if done {
                return seen;
            }
        }
    }
}

fn reply_to(id: u64) -> impl Fn(&Value) -> bool {
    move |v| v["id"] == json!(id)
}

async fn connected_client(server: &TestServer) -> (JsonWs, String) {
    let ws = server.ws("/connection/websocket", &[]).await.2.unwrap();
    let mut ws = JsonWs {
        ws,
        pending: Default::default(),
    };
    ws.ws
        .send_text(r#"{"id":1,"connect":{"name":"test"}}"#)
        .await;
    let msgs = ws.until(reply_to(1)).await;
    let reply = msgs.last().unwrap();
    assert!(reply.get("error").is_none(), "{reply}");
    let client = reply["connect"]["client"].as_str().unwrap().to_owned();
    assert!(!client.is_empty());
    (ws, client)
}

#[tokio::test]
async fn connect_subscribe_publish_json_round_trip() {
    let mut config = test_config();
    config.http_api.insecure = true;
    let server = TestServer::start(config).await;
    let (mut ws, _) = connected_client(&server).await;

    // Subscribe and publish in one frame, as centrifuge-js batches commands.
    ws.ws
        .send_text(concat!(
            r#"{"id":2,"subscribe":{"channel":"chat:room"}}"#,
            "\n",
            r#"{"id":3,"publish":{"channel":"chat:room","data":{"text":"hi"}}}"#
        ))
        .await;
    let msgs = ws
        .until(|v| v["push"]["pub"]["data"]["text"] == json!("hi"))
        .await;
    let sub = msgs
        .iter()
        .find(|v| v["id"] == json!(2))
        .expect("subscribe reply");
    assert!(sub.get("error").is_none(), "{sub}");
    let push = msgs.last().unwrap();
    assert_eq!(push["push"]["channel"], json!("chat:room"));
    if !msgs.iter().any(|v| v["id"] == json!(3)) {
        let more = ws.until(reply_to(3)).await;
        assert!(more.last().unwrap().get("error").is_none());
    }

    // The HTTP API reaches the same subscriber.
    let body = br#"{"channel":"chat:room","data":{"text":"from api"}}"#;
    let (status, _, resp) = http(server.addr, "POST", "/api/publish", &[], body).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
    let resp: Value = serde_json::from_slice(&resp).unwrap();
    assert!(resp.get("result").is_some(), "{resp}");
    let msgs = ws
        .until(|v| v["push"]["pub"]["data"]["text"] == json!("from api"))
        .await;
    assert_eq!(msgs.last().unwrap()["push"]["channel"], json!("chat:room"));

    // A malformed command is a terminal bad request (3501).
    ws.ws.send_text("{not json").await;
    assert_eq!(ws.ws.read_close().await.map(|c| c.0), Some(3501));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn graceful_shutdown_closes_clients_with_3001_and_ready_goes_503() {
    let mut config = test_config();
    config.shutdown.drain_window = chorus_core::duration::ConfigDuration::from_secs(1);
    let mut server = TestServer::start(config).await;
    let (mut first, _) = connected_client(&server).await;
    let (mut second, _) = connected_client(&server).await;
    let mut echo = server.ws("/connection/echo", &[]).await.2.unwrap();

    let mut probe = Http::connect(server.addr).await;
    let (status, _, body) = probe.request("GET", "/ready", &[], b"").await.unwrap();
    assert_eq!((status, body.as_slice()), (200, &b"{}"[..]));

    server.begin_shutdown();
    let mut saw_503 = false;
    for _ in 0..100 {
        match probe.request("GET", "/ready?verbose", &[], b"").await {
            Ok((503, _, body)) => {
                let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(
                    (&body["reason"], &body["draining"], &body["ready"]),
                    (
                        &serde_json::json!("draining"),
                        &serde_json::json!(true),
                        &serde_json::json!(false)
                    ),
                    "{body}"
                );
                saw_503 = true;
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(_) => break,
        }
    }
    assert!(saw_503, "/ready never answered 503 during the drain");

    for ws in [&mut first.ws, &mut second.ws] {
        assert_eq!(ws.read_close().await, Some((3001, "shutdown".to_owned())));
        ws.send_frame(true, OP_CLOSE, &[0x0b, 0xb9], true).await;
        assert!(ws.closed_within(Duration::from_secs(3)).await);
    }
    assert_eq!(echo.read_close().await.map(|c| c.0), Some(1001));
    // New connections are refused once the listener is gone.
    server.stop().await.unwrap();
}
