//! permessage-deflate over real sockets: negotiation in the 101, compressed echo both ways,
//! a deflate bomb refused with 1009 after inflation, RSV1 without negotiation refused with 1002.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::deflate::{deflate, inflate};
use common::*;
use flate2::{Compress, Compression, Decompress};
use tokio::io::AsyncWriteExt;

/// A masked client frame with RSV1 set (the first frame of a compressed message).
async fn send_compressed(ws: &mut RawWs, opcode: u8, payload: &[u8]) {
    let mut frame = encode_frame(true, opcode, payload, true);
    frame[0] |= 0x40;
    ws.stream.write_all(&frame).await.unwrap();
}

fn compressed_config() -> chorus_gateway::config::Config {
    let mut config = test_config();
    config.websocket.compression = true;
    config
}

#[tokio::test]
async fn negotiated_only_when_offered_and_enabled() {
    let offer = [(
        "Sec-WebSocket-Extensions",
        "permessage-deflate; server_max_window_bits=8, permessage-deflate; client_max_window_bits; server_no_context_takeover",
    )];
    let server = TestServer::start(compressed_config()).await;
    let (status, head, _ws) = server.ws("/connection/echo", &[]).await;
    assert_eq!(status, 101);
    assert_eq!(header(&head, "sec-websocket-extensions"), None);
    let (status, head, _ws) = server.ws("/connection/echo", &offer).await;
    assert_eq!(status, 101);
    // The first offer (a 256-byte window) is declined, the second accepted.
    assert_eq!(
        header(&head, "sec-websocket-extensions"),
        Some("permessage-deflate; server_no_context_takeover")
    );
    server.stop().await.unwrap();

    // Off (the default): never negotiated, and RSV1 is a protocol error.
    let server = TestServer::start(test_config()).await;
    let (status, head, ws) = server.ws("/connection/echo", &offer).await;
    assert_eq!(status, 101);
    assert_eq!(header(&head, "sec-websocket-extensions"), None);
    let mut ws = ws.unwrap();
    let mut c = Compress::new(Compression::fast(), false);
    send_compressed(&mut ws, OP_TEXT, &deflate(&mut c, b"hello")).await;
    assert_eq!(ws.read_close().await.map(|c| c.0), Some(1002));
}

#[tokio::test]
async fn compressed_echo_with_context_takeover_and_a_bomb_closes_1009() {
    let server = TestServer::start(compressed_config()).await;
    let offer = [("Sec-WebSocket-Extensions", "permessage-deflate")];
    let (status, head, ws) = server.ws("/connection/echo", &offer).await;
    assert_eq!(status, 101);
    assert_eq!(
        header(&head, "sec-websocket-extensions"),
        Some("permessage-deflate")
    );
    let mut ws = ws.unwrap();
    let mut c = Compress::new(Compression::fast(), false);
    let mut d = Decompress::new(false);
    let msg = "hello hello hello hello".repeat(10);
    for _ in 0..3 {
        // The same client and server streams across messages (context takeover).
        send_compressed(&mut ws, OP_TEXT, &deflate(&mut c, msg.as_bytes())).await;
        let f = ws.read_data().await.unwrap();
        assert_eq!(f.opcode, OP_TEXT);
        assert!(f.payload.len() < msg.len(), "echo not compressed");
        assert_eq!(inflate(&mut d, &f.payload), msg.as_bytes());
    }
    // Uncompressed input is still fine; the echo goes out compressed.
    ws.send_text("plain").await;
    let f = ws.read_data().await.unwrap();
    assert_eq!(inflate(&mut d, &f.payload), b"plain");

    // 200 KB of zeros in a ~200-byte frame: well under the 1 KiB limit on the wire, far
    // over it inflated. (A fresh compressor's blocks refer to nothing before them.)
    let bomb = deflate(
        &mut Compress::new(Compression::best(), false),
        &vec![0u8; 200_000],
    );
    assert!(bomb.len() < 1024, "{}", bomb.len());
    send_compressed(&mut ws, OP_BINARY, &bomb).await;
    assert_eq!(ws.read_close().await.map(|c| c.0), Some(1009));
    assert!(ws.closed_within(Duration::from_secs(2)).await);
    server.stop().await.unwrap();
}
