//! Delta compression through the transport-facing API: negotiation outcomes, what the API,
//! client publishes and `delta_publish` produce, and recovery in delta mode (JSON).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use chorus_core::api::PublishRequest;
use chorus_core::delta::{fossil, DeltaType};
use chorus_core::duration::ConfigDuration;
use chorus_core::options::{ChannelOptions, Namespace, NodeOptions};
use chorus_core::Node;
use chorus_protocol::{Publication, Reply};
use common::{node_with, options, TestClient};

fn delta_options() -> NodeOptions {
    let mut o = options();
    let base = ChannelOptions {
        allow_subscribe_for_client: true,
        allow_publish_for_subscriber: true,
        allowed_delta_types: vec![DeltaType::Fossil],
        ..Default::default()
    };
    o.channel.namespaces.push(Namespace {
        name: "dl".into(),
        options: ChannelOptions {
            history_size: 10,
            history_ttl: ConfigDuration::from_secs(300),
            force_recovery: true,
            ..base.clone()
        },
    });
    o.channel.namespaces.push(Namespace {
        name: "dp".into(),
        options: ChannelOptions {
            delta_publish: true,
            ..base
        },
    });
    o
}

fn doc(v: u32) -> String {
    format!(
        r#"{{"board":{{"home":"Lions","away":"Tigers","period":2,"clock":"12:0{}","score":[{v},3]}},"v":{v},"venue":"Central Stadium, North Gate, Section 12, Row 7"}}"#,
        v % 10
    )
}

async fn api_publish(node: &Node, channel: &str, data: &str, delta: bool) {
    let mut req = PublishRequest::new(channel, Bytes::from(data.to_string()));
    req.delta = delta;
    node.api().publish(req).await.unwrap();
}

async fn subscribe(c: &mut TestClient, id: u32, body: &str) -> Reply {
    c.send(&format!(r#"{{"id":{id},"subscribe":{body}}}"#))
        .await;
    c.next().await.expect("subscribe reply")
}

fn publications(replies: &[Reply]) -> Vec<Publication> {
    replies
        .iter()
        .filter_map(|r| r.push.as_ref()?.publication.clone())
        .collect()
}

/// Decodes a delta-mode JSON publication sequence as centrifuge-js does.
fn decode_all(pubs: &[Publication]) -> Vec<String> {
    let mut prev = Vec::new();
    pubs.iter()
        .map(|p| {
            let text: String = serde_json::from_slice(&p.data).expect("a JSON string");
            prev = if p.delta {
                fossil::apply(&prev, text.as_bytes()).expect("delta applies")
            } else {
                text.into_bytes()
            };
            String::from_utf8(prev.clone()).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn negotiation_outcomes() {
    let node = node_with(delta_options());
    let mut c = TestClient::connect(&node, "u").await;
    let r = subscribe(&mut c, 2, r#"{"channel":"dl:a","delta":"fossil"}"#).await;
    assert!(r.subscribe.unwrap().delta);
    // A known type the namespace does not allow: no delta mode, no error.
    let r = subscribe(&mut c, 3, r#"{"channel":"news:a","delta":"fossil"}"#).await;
    let res = r.subscribe.expect("subscribed");
    assert!(!res.delta);
    // Without asking: no delta mode.
    let r = subscribe(&mut c, 4, r#"{"channel":"dp:a"}"#).await;
    assert!(!r.subscribe.unwrap().delta);
    // An unknown type: 3501, as Centrifugo.
    c.send(r#"{"id":5,"subscribe":{"channel":"dl:b","delta":"vcdiff"}}"#)
        .await;
    assert_eq!(c.close_code().await, Some(3501));
}

#[tokio::test]
async fn api_publications_with_delta_go_as_deltas_to_delta_subscribers_only() {
    let node = node_with(delta_options());
    let mut d = TestClient::connect(&node, "d").await;
    let mut p = TestClient::connect(&node, "p").await;
    subscribe(&mut d, 2, r#"{"channel":"dl:a","delta":"fossil"}"#).await;
    subscribe(&mut p, 2, r#"{"channel":"dl:a"}"#).await;
    for v in 1..=3 {
        api_publish(&node, "dl:a", &doc(v), true).await;
    }
    api_publish(&node, "dl:a", &doc(4), false).await;
    api_publish(&node, "dl:a", &doc(5), true).await;
    let got = publications(&d.drain().await);
    assert_eq!(
        got.iter().map(|p| (p.offset, p.delta)).collect::<Vec<_>>(),
        [(1, false), (2, true), (3, true), (4, false), (5, true)]
    );
    assert_eq!(decode_all(&got), (1..=5).map(doc).collect::<Vec<_>>());
    assert!(got[1].data.len() < doc(2).len() / 2, "{:?}", got[1].data);
    let plain = publications(&p.drain().await);
    assert!(plain.iter().all(|p| !p.delta));
    assert_eq!(
        plain
            .iter()
            .map(|p| String::from_utf8_lossy(&p.data).into_owned())
            .collect::<Vec<_>>(),
        (1..=5).map(doc).collect::<Vec<_>>()
    );
    // History never carries the mark.
    let page = node
        .api()
        .history(chorus_core::api::HistoryRequest {
            channel: "dl:a".into(),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.publications.len(), 5);
    assert!(page.publications.iter().all(|p| !p.delta));
}

#[tokio::test]
async fn delta_publish_namespace_compresses_client_publishes() {
    let node = node_with(delta_options());
    let mut d = TestClient::connect(&node, "d").await;
    subscribe(&mut d, 2, r#"{"channel":"dp:a","delta":"fossil"}"#).await;
    for v in 1..=3 {
        // The command's `data` is the JSON document itself.
        d.send(&format!(
            r#"{{"id":{},"publish":{{"channel":"dp:a","data":{}}}}}"#,
            10 + v,
            doc(v)
        ))
        .await;
    }
    let replies = d.drain().await;
    let got = publications(&replies);
    assert_eq!(
        got.iter().map(|p| p.delta).collect::<Vec<_>>(),
        [false, true, true]
    );
    assert_eq!(decode_all(&got), (1..=3).map(doc).collect::<Vec<_>>());
    // Publisher info rides along, unchanged.
    assert_eq!(got[1].info.as_ref().map(|i| i.user.as_str()), Some("d"));
}

#[tokio::test]
async fn recovery_in_delta_mode_is_full_then_deltas_again() {
    let node = node_with(delta_options());
    let mut d = TestClient::connect(&node, "d").await;
    subscribe(&mut d, 2, r#"{"channel":"dl:a","delta":"fossil"}"#).await;
    api_publish(&node, "dl:a", &doc(1), true).await;
    d.drain().await;
    // Gone for a while: three publications missed.
    d.send(r#"{"id":3,"unsubscribe":{"channel":"dl:a"}}"#).await;
    d.drain().await;
    for v in 2..=4 {
        api_publish(&node, "dl:a", &doc(v), true).await;
    }
    let r = subscribe(
        &mut d,
        4,
        r#"{"channel":"dl:a","delta":"fossil","recover":true,"offset":1,"epoch":""}"#,
    )
    .await;
    let res = r.subscribe.unwrap();
    assert!(res.recovered && res.delta);
    assert_eq!(
        res.publications
            .iter()
            .map(|p| (p.offset, p.delta))
            .collect::<Vec<_>>(),
        [(2, false), (3, false), (4, false)]
    );
    assert_eq!(
        decode_all(&res.publications),
        (2..=4).map(doc).collect::<Vec<_>>()
    );
    for v in 5..=6 {
        api_publish(&node, "dl:a", &doc(v), true).await;
    }
    let live = publications(&d.drain().await);
    assert_eq!(
        live.iter().map(|p| (p.offset, p.delta)).collect::<Vec<_>>(),
        [(5, false), (6, true)]
    );
    assert_eq!(decode_all(&live), (5..=6).map(doc).collect::<Vec<_>>());
}
