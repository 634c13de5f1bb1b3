use std::sync::Arc;

use bytes::Bytes;
use chorus_protocol::{decode_replies, Protocol, Publication};

use super::full_for_reply;
use crate::delta::fossil;
use crate::hub::subscriber::Subscriber;
use crate::hub::Hub;
use crate::outbound::{Outbound, Taken};

const CH: &str = "ch";

fn subscribe(
    hub: &Hub,
    id: &str,
    protocol: Protocol,
    delta: bool,
) -> (Arc<Subscriber>, Arc<Outbound>) {
    let out = Arc::new(Outbound::new(1 << 20));
    let sub = Arc::new(
        Subscriber::new(
            Arc::from(id),
            Arc::from(CH),
            protocol,
            out.clone(),
            false,
            false,
        )
        .with_delta(delta),
    );
    assert!(hub.add_subscriber(sub.clone()));
    (sub, out)
}

fn live(hub: &Hub, id: &str, protocol: Protocol, delta: bool) -> Arc<Outbound> {
    let (sub, out) = subscribe(hub, id, protocol, delta);
    sub.go_live(0, "");
    out
}

/// The raw messages queued, one per publication.
fn frames(out: &Outbound) -> Vec<Bytes> {
    let mut all = Vec::new();
    while let Some(Taken::Messages(m)) = out.try_take(1000, usize::MAX) {
        all.extend(m);
    }
    all
}

fn publications(out: &Outbound, protocol: Protocol) -> Vec<Publication> {
    frames(out)
        .iter()
        .flat_map(|f| decode_replies(protocol, f).unwrap_or_default())
        .filter_map(|r| r.push?.publication)
        .collect()
}

fn publish(hub: &Hub, data: &str, offset: u64, compressible: bool) {
    let publication = Publication {
        data: Bytes::from(data.to_string()),
        offset,
        delta: compressible,
        ..Default::default()
    };
    hub.broadcast_publication(CH, publication, if offset > 0 { "EP" } else { "" });
}

/// What centrifuge-js does with a delta-mode JSON publication: the data is a JSON string; a
/// delta is applied to the previous payload text.
fn json_decode(prev: &[u8], p: &Publication) -> Vec<u8> {
    let text: String = serde_json::from_slice(&p.data).unwrap_or_default();
    if p.delta {
        fossil::apply(prev, text.as_bytes()).unwrap_or_default()
    } else {
        text.into_bytes()
    }
}

fn doc(v: u32) -> String {
    format!(
        r#"{{"order":{{"id":"a1b2c3d4e5","status":"shipping","items":[{{"sku":"X-1","qty":2}},{{"sku":"Y-9","qty":1}}],"eta":"2026-12-0{}T10:00:00Z"}},"version":{v}}}"#,
        v % 9
    )
}

#[test]
fn json_delta_subscriber_gets_full_then_deltas_others_get_normal_frames() {
    let hub = Hub::default();
    let delta = live(&hub, "d", Protocol::Json, true);
    let plain = live(&hub, "p", Protocol::Json, false);
    for v in 1..=3 {
        publish(&hub, &doc(v), 0, true);
    }
    let got = publications(&delta, Protocol::Json);
    assert_eq!(
        got.iter().map(|p| p.delta).collect::<Vec<_>>(),
        [false, true, true]
    );
    // Full in delta mode: the payload text as a JSON string.
    assert_eq!(got[0].data, serde_json::to_vec(&doc(1)).unwrap_or_default());
    let mut prev = Vec::new();
    for (v, p) in (1..=3).zip(&got) {
        prev = json_decode(&prev, p);
        assert_eq!(prev, doc(v).into_bytes());
    }
    assert!(
        got[1].data.len() < doc(2).len() / 2,
        "{} bytes",
        got[1].data.len()
    );
    // The non-delta subscriber: exactly the normal frame, no delta flag.
    let normal = frames(&plain);
    assert_eq!(
        normal[1],
        format!(
            r#"{{"push":{{"channel":"ch","pub":{{"data":{}}}}}}}"#,
            doc(2)
        )
        .into_bytes()
    );
    assert_eq!(hub.num_delta_channels(), 1);
}

#[test]
fn protobuf_full_frame_is_the_normal_frame_and_deltas_are_binary() {
    let hub = Hub::default();
    let delta = live(&hub, "d", Protocol::Protobuf, true);
    let plain = live(&hub, "p", Protocol::Protobuf, false);
    publish(&hub, &doc(1), 0, true);
    publish(&hub, &doc(2), 0, true);
    let (d, p) = (frames(&delta), frames(&plain));
    assert_eq!(d[0], p[0]);
    assert_ne!(d[1], p[1]);
    assert!(d[1].len() < p[1].len());
    let got = publications(&delta, Protocol::Protobuf);
    assert!(got.is_empty());
    let pubs: Vec<Publication> = d
        .iter()
        .flat_map(|f| decode_replies(Protocol::Protobuf, f).unwrap_or_default())
        .filter_map(|r| r.push?.publication)
        .collect();
    assert!(!pubs[0].delta && pubs[1].delta);
    assert_eq!(pubs[0].data, doc(1).into_bytes());
    assert_eq!(
        fossil::apply(&pubs[0].data, &pubs[1].data),
        Ok(doc(2).into_bytes())
    );
}

#[test]
fn delta_frames_are_encoded_once_and_shared() {
    let hub = Hub::default();
    let a = live(&hub, "a", Protocol::Json, true);
    let b = live(&hub, "b", Protocol::Json, true);
    publish(&hub, &doc(1), 0, true);
    publish(&hub, &doc(2), 0, true);
    let (fa, fb) = (frames(&a), frames(&b));
    assert_eq!(fa[1].as_ptr(), fb[1].as_ptr());
    assert_eq!(fa[0].as_ptr(), fb[0].as_ptr());
}

#[test]
fn publication_not_compressible_goes_full_but_is_the_next_base() {
    let hub = Hub::default();
    let out = live(&hub, "d", Protocol::Json, true);
    publish(&hub, &doc(1), 0, true);
    publish(&hub, &doc(2), 0, false);
    publish(&hub, &doc(3), 0, true);
    let got = publications(&out, Protocol::Json);
    assert_eq!(
        got.iter().map(|p| p.delta).collect::<Vec<_>>(),
        [false, false, true]
    );
    assert_eq!(
        json_decode(&doc(2).into_bytes(), &got[2]),
        doc(3).into_bytes()
    );
}

#[test]
fn offset_gap_sends_full() {
    let hub = Hub::default();
    let out = live(&hub, "d", Protocol::Json, true);
    publish(&hub, &doc(1), 1, true);
    publish(&hub, &doc(2), 2, true);
    publish(&hub, &doc(4), 4, true);
    publish(&hub, &doc(5), 5, true);
    let got = publications(&out, Protocol::Json);
    assert_eq!(
        got.iter().map(|p| p.offset).collect::<Vec<_>>(),
        [1, 2, 4, 5]
    );
    assert_eq!(
        got.iter().map(|p| p.delta).collect::<Vec<_>>(),
        [false, true, false, true]
    );
}

#[test]
fn late_and_buffering_subscribers_start_with_a_full_publication() {
    let hub = Hub::default();
    let early = live(&hub, "e", Protocol::Json, true);
    publish(&hub, &doc(1), 0, true);
    let late = live(&hub, "l", Protocol::Json, true);
    let (buffering, buffered_out) = subscribe(&hub, "b", Protocol::Json, true);
    publish(&hub, &doc(2), 0, true);
    buffering.go_live(0, "");
    publish(&hub, &doc(3), 0, true);
    publish(&hub, &doc(4), 0, true);
    let deltas = |out: &Outbound| {
        publications(out, Protocol::Json)
            .iter()
            .map(|p| p.delta)
            .collect::<Vec<_>>()
    };
    assert_eq!(deltas(&early), [false, true, true, true]);
    assert_eq!(deltas(&late), [false, true, true]);
    // Released from the buffer full; the first live one full as well, then deltas.
    assert_eq!(deltas(&buffered_out), [false, false, true]);
}

#[test]
fn delta_no_smaller_than_the_payload_goes_full() {
    let hub = Hub::default();
    let out = live(&hub, "d", Protocol::Json, true);
    publish(&hub, "1", 0, true);
    publish(&hub, "2", 0, true);
    let got = publications(&out, Protocol::Json);
    assert_eq!(
        got.iter().map(|p| p.delta).collect::<Vec<_>>(),
        [false, false]
    );
    assert_eq!(got[1].data, Bytes::from_static(b"\"2\""));
}

#[test]
fn delta_state_lives_only_while_delta_subscribers_do() {
    let hub = Hub::default();
    let plain = live(&hub, "p", Protocol::Json, false);
    publish(&hub, &doc(1), 0, true);
    assert_eq!(hub.num_delta_channels(), 0);
    // The "compressible" mark never reaches a client.
    assert!(publications(&plain, Protocol::Json)
        .iter()
        .all(|p| !p.delta));
    let (a, _) = subscribe(&hub, "a", Protocol::Json, true);
    let (b, _) = subscribe(&hub, "b", Protocol::Json, true);
    assert_eq!(hub.num_delta_channels(), 1);
    hub.remove_subscriber(&a);
    assert_eq!(hub.num_delta_channels(), 1);
    hub.remove_subscriber(&b);
    assert_eq!(hub.num_delta_channels(), 0);
    // A duplicate subscriber is refused and not counted.
    let (c, _) = subscribe(&hub, "c", Protocol::Json, true);
    let dup = Arc::new(
        Subscriber::new(
            Arc::from("c"),
            Arc::from(CH),
            Protocol::Json,
            Arc::new(Outbound::new(1 << 20)),
            false,
            false,
        )
        .with_delta(true),
    );
    assert!(!hub.add_subscriber(dup));
    hub.remove_subscriber(&c);
    assert_eq!(hub.num_delta_channels(), 0);
}

#[test]
fn recovered_publications_are_full_and_json_strings() {
    let p = Publication {
        data: Bytes::from_static(br#"{"a":1}"#),
        offset: 7,
        delta: true,
        ..Default::default()
    };
    let json = full_for_reply(p.clone(), Protocol::Json);
    assert_eq!(json.data, Bytes::from_static(br#""{\"a\":1}""#));
    assert!(!json.delta);
    assert_eq!(json.offset, 7);
    let pb = full_for_reply(p, Protocol::Protobuf);
    assert_eq!(pb.data, Bytes::from_static(br#"{"a":1}"#));
    assert!(!pb.delta);
}
