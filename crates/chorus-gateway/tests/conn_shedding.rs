//! Connection shedding at `http_server.max_connections`, over real sockets: stalled
//! connections are closed oldest first to let real clients in, established WebSocket sessions
//! are never touched, idle keep-alive connections go when nothing is pending, and a new
//! connection gets 503 when only sessions hold the budget.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use chorus_core::api::PublishRequest;
use chorus_core::duration::ConfigDuration;
use common::*;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The registry gauges and counters are process-wide: one test at a time in this binary.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn config(max_connections: usize) -> chorus_gateway::config::Config {
    let mut config = test_config();
    config.http_api.key = "secret".into();
    config.http_server.max_connections = max_connections;
    // Stalled connections must stay until shed, not be closed by the header timeout.
    config.http_server.header_read_timeout = ConfigDuration::from_secs(30);
    config.http_server.request_timeout = ConfigDuration::from_secs(30);
    config
}

const SHED_PENDING: &str = r#"chorus_http_connections_shed_total{state="pending"}"#;
const SHED_IDLE: &str = r#"chorus_http_connections_shed_total{state="idle"}"#;
const REFUSED: &str = "chorus_http_connections_refused_total";
const PENDING: &str = r#"chorus_http_connections{state="pending"}"#;
const UPGRADED: &str = r#"chorus_http_connections{state="upgraded"}"#;

/// Polls `check` every 10 ms for up to 5 s.
async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether the server closed `stream` within `within` (EOF or reset).
async fn closed(stream: &mut TcpStream, within: Duration) -> bool {
    stream_closed_within(stream, within).await
}

async fn publish_via_api(server: &TestServer, channel: &str, n: u64) -> u16 {
    let body = json!({"channel": channel, "data": {"n": n}}).to_string();
    let mut s = raw_send(
        server.addr,
        format!(
            "POST /api/publish HTTP/1.1\r\nHost: t\r\nX-API-Key: secret\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await;
    read_response(&mut s).await.unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_are_shed_oldest_first_and_sessions_survive() {
    let _serial = SERIAL.lock().await;
    let (shed0, pending0, upgraded0) = (metric(SHED_PENDING), metric(PENDING), metric(UPGRADED));
    let server = TestServer::start(config(40)).await;
    let mut session = subscribed(&server, "news").await;

    // 60 stalled connections: half send nothing, half half a request line.
    let mut stalled = Vec::new();
    for i in 0..60 {
        let stream = if i % 2 == 0 {
            TcpStream::connect(server.addr).await.unwrap()
        } else {
            raw_send(server.addr, b"GET /health HT").await
        };
        stalled.push(stream);
    }
    // 1 session + 39 stalled fill the budget of 40: the 21 oldest stalled were shed.
    wait_for("21 sheds", || async {
        metric(SHED_PENDING) - shed0 == 21.0
    })
    .await;
    assert_eq!(metric(PENDING) - pending0, 39.0);
    for (i, s) in stalled.iter_mut().enumerate().take(21) {
        assert!(
            closed(s, Duration::from_secs(2)).await,
            "stalled #{i} still open"
        );
    }
    for (i, s) in stalled.iter_mut().enumerate().skip(21) {
        assert!(
            !closed(s, Duration::from_millis(20)).await,
            "stalled #{i} closed"
        );
    }

    // Real clients still get in, each at the expense of the oldest stalled connection.
    let mut newcomer = subscribed(&server, "news").await;
    assert_eq!(publish_via_api(&server, "news", 1).await, 200);
    assert_eq!(metric(SHED_PENDING) - shed0, 23.0);
    for (i, s) in stalled.iter_mut().enumerate().take(23).skip(21) {
        assert!(
            closed(s, Duration::from_secs(2)).await,
            "stalled #{i} still open"
        );
    }
    for (i, s) in stalled.iter_mut().enumerate().skip(23) {
        assert!(
            !closed(s, Duration::from_millis(20)).await,
            "stalled #{i} closed"
        );
    }

    // Both sessions receive the API publication: the established one was never shed.
    assert_eq!(
        next_publication(&mut session, "news").await,
        json!({"n": 1})
    );
    assert_eq!(
        next_publication(&mut newcomer, "news").await,
        json!({"n": 1})
    );
    assert_eq!(metric(UPGRADED) - upgraded0, 2.0);
    assert_eq!(server.node.num_clients(), 2);
    drop((stalled, session, newcomer));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_sessions_in_the_budget_means_503_for_newcomers() {
    let _serial = SERIAL.lock().await;
    let refused0 = metric(REFUSED);
    let server = TestServer::start(config(3)).await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(subscribed(&server, "room").await);
    }
    // Answered at once, without the client sending anything, and closed.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let (status, head, body) = read_response(&mut s).await.unwrap();
    assert_eq!(status, 503, "{head}");
    assert_eq!(body, b"server at connection limit\n");
    assert_eq!(header(&head, "connection"), Some("close"));
    assert_eq!(header(&head, "retry-after"), Some("1"));
    assert!(closed(&mut s, Duration::from_secs(2)).await);
    // A WebSocket client is refused the same way.
    let refused = RawWs::connect(server.addr, "/connection/websocket", &[]).await;
    assert_eq!(refused.unwrap().0, 503);
    assert_eq!(metric(REFUSED) - refused0, 2.0);

    // The sessions are untouched.
    server
        .node
        .api()
        .publish(PublishRequest::new(
            "room",
            Bytes::from_static(b"{\"n\":7}"),
        ))
        .await
        .unwrap();
    for ws in &mut sessions {
        assert_eq!(next_publication(ws, "room").await, json!({"n": 7}));
    }

    // A session that ends frees its slot.
    let mut first = sessions.remove(0);
    first.send_frame(true, OP_CLOSE, &[0x03, 0xe8], true).await;
    assert_eq!(first.read_close().await.map(|c| c.0), Some(1000));
    assert!(first.closed_within(Duration::from_secs(2)).await);
    wait_for("a free slot", || async {
        let mut s = raw_send(server.addr, b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n").await;
        matches!(read_response(&mut s).await, Ok((200, _, _)))
    })
    .await;
    drop(sessions);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_shed_when_nothing_is_pending() {
    let _serial = SERIAL.lock().await;
    let (idle0, pending0) = (metric(SHED_IDLE), metric(SHED_PENDING));
    let server = TestServer::start(config(3)).await;
    let session = subscribed(&server, "room").await;
    let mut older = raw_send(server.addr, b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(read_response(&mut older).await.unwrap().0, 200);
    let mut newer = raw_send(server.addr, b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(read_response(&mut newer).await.unwrap().0, 200);

    // Budget full (1 session + 2 idle): the older idle connection makes room.
    assert_eq!(publish_via_api(&server, "room", 2).await, 200);
    assert!(
        closed(&mut older, Duration::from_secs(2)).await,
        "older idle kept"
    );
    assert!(
        !closed(&mut newer, Duration::from_millis(50)).await,
        "newer idle shed"
    );
    assert_eq!(metric(SHED_IDLE) - idle0, 1.0);
    assert_eq!(metric(SHED_PENDING) - pending0, 0.0);
    // The surviving idle connection still serves requests.
    newer
        .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut newer).await.unwrap().0, 200);
    drop(session);
    server.stop().await.unwrap();
}
