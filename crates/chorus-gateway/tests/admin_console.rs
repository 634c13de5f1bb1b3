//! The admin console over real sockets: 404 everywhere while it is off; the page, the login
//! (400 / 401 counted / 200 / 429 from the brake) and the server API behind the session token
//! (401 without one, before the body is read); a publication and a disconnect made through
//! it reach a real client; with `http_server.internal_port` it lives on the internal
//! listener only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use common::*;
use serde_json::Value;

const PASSWORD: &str = "operator password 0123";
const SECRET: &str = "admin-secret-9f86d081884c7d659a2feaa0c55ad015";

fn admin_config() -> chorus_gateway::config::Config {
    let mut config = test_config();
    config.admin.enabled = true;
    config.admin.password = PASSWORD.into();
    config.admin.secret = SECRET.into();
    config
}

async fn login(addr: SocketAddr, password: &str) -> (u16, String, Vec<u8>) {
    let body = serde_json::json!({ "password": password }).to_string();
    http(addr, "POST", "/admin/auth", &[], body.as_bytes()).await
}

async fn token(addr: SocketAddr) -> String {
    let (status, head, body) = login(addr, PASSWORD).await;
    assert_eq!(status, 200, "{head}");
    assert_eq!(header(&head, "content-type"), Some("application/json"));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["expires_in"], 86400);
    v["token"].as_str().unwrap().to_owned()
}

/// A client connected as `user` (HS256 token) and subscribed to `channel`.
async fn user_subscribed(server: &TestServer, secret: &str, user: &str, channel: &str) -> RawWs {
    let claims = serde_json::json!({ "sub": user });
    let jwt = chorus_gateway::auth::sign_hs256(secret, &claims).unwrap();
    let (status, _, ws) = server.ws("/connection/websocket", &[]).await;
    assert_eq!(status, 101);
    let mut ws = ws.unwrap();
    ws.send_text(&format!(
        "{{\"id\":1,\"connect\":{{\"token\":\"{jwt}\"}}}}\n\
         {{\"id\":2,\"subscribe\":{{\"channel\":\"{channel}\"}}}}"
    ))
    .await;
    let mut subscribed = false;
    while !subscribed {
        let f = ws.read_data().await.expect("reply");
        for line in String::from_utf8(f.payload).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert!(v.get("error").is_none(), "{v}");
            subscribed |= v["id"] == 2;
        }
    }
    ws
}

#[tokio::test]
async fn console_is_404_while_disabled() {
    let server = TestServer::start(test_config()).await;
    for (method, path) in [
        ("GET", "/admin"),
        ("GET", "/admin/"),
        ("GET", "/admin/app.js"),
        ("POST", "/admin/auth"),
        ("POST", "/admin/api/info"),
    ] {
        let (status, _, _) = http(server.addr, method, path, &[], b"{}").await;
        assert_eq!(status, 404, "{method} {path}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn page_login_and_api_through_the_session() {
    let config = admin_config();
    let client_secret = config.client.token.hmac_secret_key.clone();
    let server = TestServer::start(config).await;
    let addr = server.addr;

    // The page.
    let (status, head, _) = http(addr, "GET", "/admin", &[], b"").await;
    assert_eq!((status, header(&head, "location")), (308, Some("admin/")));
    let (status, head, body) = http(addr, "GET", "/admin/", &[], b"").await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&head, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(header(&head, "content-security-policy")
        .unwrap()
        .starts_with("default-src 'self'"));
    assert!(String::from_utf8(body)
        .unwrap()
        .contains("id=\"login-form\""));
    for path in ["/admin/app.js", "/admin/style.css", "/admin/index.html"] {
        let (status, _, body) = http(addr, "GET", path, &[], b"").await;
        assert_eq!(status, 200, "{path}");
        assert!(!body.is_empty());
    }
    let (status, _, _) = http(addr, "GET", "/admin/nope", &[], b"").await;
    assert_eq!(status, 404);
    let (status, head, _) = http(addr, "GET", "/admin/auth", &[], b"").await;
    assert_eq!((status, header(&head, "allow")), (405, Some("POST")));

    // Bad bodies: 400, no attempt taken. Wrong password: 401, counted once each.
    let wrong = r#"chorus_admin_logins_total{result="wrong_password"}"#;
    let before = metric(wrong);
    for body in [&b"nope"[..], br#"{"pass":"x"}"#, br#"{"password":7}"#] {
        let (status, _, _) = http(addr, "POST", "/admin/auth", &[], body).await;
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(body));
    }
    let (status, _, body) = login(addr, "operator password 012").await;
    assert_eq!((status, body.as_slice()), (401, &b"wrong password\n"[..]));
    assert_eq!(metric(wrong), before + 1.0);
    let (status, _, _) = login(addr, "").await;
    assert_eq!(status, 401);
    assert_eq!(metric(wrong), before + 2.0);
    // The counter is on /metrics too.
    let (_, _, text) = http(addr, "GET", "/metrics", &[], b"").await;
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains(wrong), "{text}");

    let token = token(addr).await;
    let auth = format!("token {token}");
    let auth = [("Authorization", auth.as_str())];

    // The server API behind the session: 401 without it (or with the API key), 405 for GET.
    for headers in [
        &[][..],
        &[("Authorization", "token not-a-token")][..],
        &[("Authorization", "apikey whatever")][..],
    ] {
        let (status, head, _) = http(addr, "POST", "/admin/api/info", headers, b"{}").await;
        assert_eq!(status, 401, "{headers:?}");
        assert_eq!(header(&head, "connection"), Some("close"));
    }
    let (status, _, _) = http(addr, "GET", "/admin/api/info", &auth, b"").await;
    assert_eq!(status, 405);
    let (status, _, _) = http(addr, "POST", "/admin/api/nope", &auth, b"{}").await;
    assert_eq!(status, 404);
    let (status, _, _) = http(addr, "POST", "/admin/api/", &auth, b"{}").await;
    assert_eq!(status, 404);

    // info: one node with its counters and uptime.
    let mut ws = user_subscribed(&server, &client_secret, "alice", "chat:ops").await;
    let (status, _, body) = http(addr, "POST", "/admin/api/info", &auth, b"{}").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    let nodes = v["result"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{v}");
    assert_eq!(nodes[0]["num_clients"], 1, "{v}");
    assert_eq!(nodes[0]["num_users"], 1, "{v}");
    assert_eq!(nodes[0]["num_channels"], 1, "{v}");
    assert!(nodes[0]["uptime"].is_u64(), "{v}");

    // publish: the subscriber gets exactly the data.
    let publish = br#"{"channel":"chat:ops","data":{"text":"from the console","n":[1,2.5]}}"#;
    let (status, _, body) = http(addr, "POST", "/admin/api/publish", &auth, publish).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        next_publication(&mut ws, "chat:ops").await,
        serde_json::json!({"text": "from the console", "n": [1, 2.5]})
    );

    // presence and history of the channel.
    let lookup = br#"{"channel":"chat:ops"}"#;
    let (_, _, body) = http(addr, "POST", "/admin/api/presence", &auth, lookup).await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    let presence = v["result"]["presence"].as_object().unwrap();
    assert_eq!(presence.len(), 1, "{v}");
    assert_eq!(presence.values().next().unwrap()["user"], "alice");
    let history = br#"{"channel":"chat:ops","limit":10,"reverse":true}"#;
    let (_, _, body) = http(addr, "POST", "/admin/api/history", &auth, history).await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["result"]["publications"][0]["data"]["text"], "from the console",
        "{v}"
    );

    // disconnect: the user's connection is closed with 3503.
    let dc = br#"{"user":"alice"}"#;
    let (status, _, body) = http(addr, "POST", "/admin/api/disconnect", &auth, dc).await;
    assert_eq!((status, body.as_slice()), (200, &br#"{"result":{}}"#[..]));
    assert_eq!(
        ws.read_close().await,
        Some((3503, "force disconnect".to_owned()))
    );

    // A session signed with another secret is refused.
    let forged = chorus_gateway::admin::token::sign(
        "another-secret-0123456789abcdef0123456789",
        std::time::Duration::from_secs(60),
        chorus_core::clock::unix_now(),
    )
    .unwrap();
    let forged = format!("token {forged}");
    let (status, _, _) = http(
        addr,
        "POST",
        "/admin/api/info",
        &[("Authorization", forged.as_str())],
        b"{}",
    )
    .await;
    assert_eq!(status, 401);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn logins_are_braked() {
    let mut config = admin_config();
    config.admin.login_burst = 2;
    config.admin.login_rate_limit = 1;
    let server = TestServer::start(config).await;
    let throttled = r#"chorus_admin_logins_total{result="throttled"}"#;
    let before = metric(throttled);
    // Two attempts from the burst, then 429 even for the right password (only right ones
    // here: another test of this process counts wrong passwords exactly).
    let _ = token(server.addr).await;
    let _ = token(server.addr).await;
    let (status, head, _) = login(server.addr, PASSWORD).await;
    assert_eq!((status, header(&head, "retry-after")), (429, Some("1")));
    assert_eq!(metric(throttled), before + 1.0);
    // One attempt is back a second later.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let _ = token(server.addr).await;
    server.stop().await.unwrap();
}

/// With an internal port the console is there, and 404 on the client port.
#[tokio::test]
async fn console_lives_on_the_internal_listener() {
    let config = admin_config();
    let srv = TestServer::start_split(config).await;
    let (ext, int) = (srv.addr, srv.internal.unwrap());
    for path in ["/admin", "/admin/", "/admin/app.js"] {
        let (status, _, _) = http(ext, "GET", path, &[], b"").await;
        assert_eq!(status, 404, "external {path}");
    }
    let (status, _, _) = login(ext, PASSWORD).await;
    assert_eq!(status, 404, "external login");
    let (status, _, _) = http(int, "GET", "/admin/", &[], b"").await;
    assert_eq!(status, 200);
    let token = format!("token {}", token(int).await);
    let (status, _, body) = http(
        int,
        "POST",
        "/admin/api/info",
        &[("Authorization", token.as_str())],
        b"{}",
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (status, _, _) = http(
        ext,
        "POST",
        "/admin/api/info",
        &[("Authorization", token.as_str())],
        b"{}",
    )
    .await;
    assert_eq!(status, 404);
    srv.stop().await.unwrap();
}
