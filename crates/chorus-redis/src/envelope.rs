//! The bytes on Redis: the publish frame and `chorus_proto::backplane::Envelope` <-> core types.
//!
//! Frame (every PUBLISH/SPUBLISH payload of chorus):
//!
//! ```text
//! c1:<offset decimal>:<epoch>:<protobuf Envelope>
//! ```
//!
//! The header is written by the publish Lua script once it knows the offset (Lua cannot patch
//! a protobuf varint cheaply), so the Envelope inside is encoded once in Rust with offset 0 and
//! empty epoch; the reader patches both from the header. Without history (and for join, leave,
//! control, probes) the header is `c1:0::`. History entries keep the bare Envelope in field `d`
//! of the stream entry whose id is `<offset>-0`.

use chorus_core::auth::SubscribeOverride;
use chorus_core::clock::unix_now_ms;
use chorus_core::control::{
    Control, ControlMessage, DisconnectUser, NodeInfo, RefreshUser, SubscribeUser, SurveyOp,
    SurveyRequest, SurveyResponse, UnsubscribeUser,
};
use chorus_core::Disconnect;
use chorus_proto::backplane as pb;
use chorus_protocol::{ClientInfo, Publication, StreamPosition};
use prost::Message;

/// What one frame carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    Publication {
        channel: String,
        publication: Publication,
        epoch: String,
        time_ms: i64,
    },
    Join {
        channel: String,
        info: ClientInfo,
    },
    Leave {
        channel: String,
        info: ClientInfo,
    },
    Control(ControlMessage),
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("bad frame header")]
    Header,
    #[error("bad envelope: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("empty envelope")]
    Empty,
}

/// `c1:0::` + envelope.
pub fn frame(envelope: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(envelope.len() + 6);
    out.extend_from_slice(b"c1:0::");
    out.extend_from_slice(envelope);
    out
}

/// Splits a frame into (offset, epoch, envelope bytes).
pub fn parse_frame(data: &[u8]) -> Result<(u64, &str, &[u8]), FrameError> {
    let rest = data.strip_prefix(b"c1:").ok_or(FrameError::Header)?;
    let colon = rest
        .iter()
        .position(|b| *b == b':')
        .ok_or(FrameError::Header)?;
    let offset: u64 = std::str::from_utf8(&rest[..colon])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(FrameError::Header)?;
    let rest = &rest[colon + 1..];
    let colon = rest
        .iter()
        .take(64)
        .position(|b| *b == b':')
        .ok_or(FrameError::Header)?;
    let epoch = std::str::from_utf8(&rest[..colon]).map_err(|_| FrameError::Header)?;
    Ok((offset, epoch, &rest[colon + 1..]))
}

/// Decodes a whole frame.
pub fn decode_frame(data: &[u8]) -> Result<Delivery, FrameError> {
    let (offset, epoch, body) = parse_frame(data)?;
    decode(body, offset, epoch)
}

/// Decodes an envelope, setting the publication's offset and epoch.
pub fn decode(body: &[u8], offset: u64, epoch: &str) -> Result<Delivery, FrameError> {
    let env = pb::Envelope::decode(body)?;
    match env.kind.ok_or(FrameError::Empty)? {
        pb::envelope::Kind::Publication(p) => Ok(Delivery::Publication {
            channel: p.channel,
            publication: Publication {
                data: p.data,
                info: p.info.map(client_from_pb),
                offset,
                tags: p.tags,
                delta: p.delta,
            },
            epoch: epoch.to_string(),
            time_ms: p.time_ms,
        }),
        pb::envelope::Kind::Join(j) => Ok(Delivery::Join {
            channel: j.channel,
            info: j.info.map(client_from_pb).unwrap_or_default(),
        }),
        pb::envelope::Kind::Leave(l) => Ok(Delivery::Leave {
            channel: l.channel,
            info: l.info.map(client_from_pb).unwrap_or_default(),
        }),
        pb::envelope::Kind::Control(c) => Ok(Delivery::Control(ControlMessage {
            from: env.node,
            target: c.target,
            control: control_from_pb(c.command).ok_or(FrameError::Empty)?,
        })),
    }
}

fn client_to_pb(c: ClientInfo) -> pb::ClientInfo {
    pb::ClientInfo {
        user: c.user,
        client: c.client,
        conn_info: c.conn_info,
        chan_info: c.chan_info,
    }
}

fn client_from_pb(c: pb::ClientInfo) -> ClientInfo {
    ClientInfo {
        user: c.user,
        client: c.client,
        conn_info: c.conn_info,
        chan_info: c.chan_info,
    }
}

fn encode(node: &str, kind: pb::envelope::Kind) -> Vec<u8> {
    pb::Envelope {
        node: node.to_string(),
        kind: Some(kind),
    }
    .encode_to_vec()
}

/// The envelope of a publication (offset and epoch are carried by the frame / stream id).
pub fn encode_publication(node: &str, channel: &str, p: Publication) -> Vec<u8> {
    encode(
        node,
        pb::envelope::Kind::Publication(pb::Publication {
            channel: channel.to_string(),
            data: p.data,
            info: p.info.map(client_to_pb),
            offset: 0,
            epoch: String::new(),
            tags: p.tags,
            time_ms: unix_now_ms(),
            // "Delta-compressible": each node's hub decides per subscriber.
            delta: p.delta,
        }),
    )
}

pub fn encode_join(node: &str, channel: &str, info: ClientInfo) -> Vec<u8> {
    encode(
        node,
        pb::envelope::Kind::Join(pb::Join {
            channel: channel.to_string(),
            info: Some(client_to_pb(info)),
        }),
    )
}

pub fn encode_leave(node: &str, channel: &str, info: ClientInfo) -> Vec<u8> {
    encode(
        node,
        pb::envelope::Kind::Leave(pb::Leave {
            channel: channel.to_string(),
            info: Some(client_to_pb(info)),
        }),
    )
}

pub fn encode_control(m: ControlMessage) -> Vec<u8> {
    use pb::control::Command;
    let command = match m.control {
        Control::NodeInfo(n) => Command::NodeInfo(pb::NodeInfo {
            uid: n.uid,
            name: n.name,
            version: n.version,
            num_clients: n.num_clients,
            num_users: n.num_users,
            num_channels: n.num_channels,
            uptime: n.uptime,
            num_subs: n.num_subs,
            time_ms: unix_now_ms(),
        }),
        Control::Subscribe(s) => Command::Subscribe(pb::SubscribeUser {
            user: s.user,
            channel: s.channel,
            client: s.client,
            session: s.session,
            expire_at: s.expire_at,
            info: s.info,
            data: s.data,
            recover_since: s.recover_since.map(|p| pb::StreamPosition {
                offset: p.offset,
                epoch: p.epoch,
            }),
            presence: s.override_options.presence,
            join_leave: s.override_options.join_leave,
            force_recovery: s.override_options.force_recovery,
            force_positioning: s.override_options.force_positioning,
            force_push_join_leave: s.override_options.force_push_join_leave,
        }),
        Control::Unsubscribe(u) => Command::Unsubscribe(pb::UnsubscribeUser {
            user: u.user,
            channel: u.channel,
            client: u.client,
            session: u.session,
        }),
        Control::Disconnect(d) => Command::Disconnect(pb::DisconnectUser {
            user: d.user,
            client: d.client,
            session: d.session,
            whitelist: d.whitelist,
            code: u32::from(d.disconnect.code),
            reason: d.disconnect.reason,
        }),
        Control::Refresh(r) => Command::Refresh(pb::RefreshUser {
            user: r.user,
            client: r.client,
            session: r.session,
            expired: r.expired,
            expire_at: r.expire_at,
            info: r.info,
        }),
        Control::SurveyRequest(r) => Command::SurveyRequest(pb::SurveyRequest {
            id: r.id,
            op: r.op.name().to_string(),
            data: r.data,
        }),
        Control::SurveyResponse(r) => Command::SurveyResponse(pb::SurveyResponse {
            id: r.id,
            data: r.data,
            error: r.error,
        }),
        Control::Shutdown => Command::Shutdown(pb::Shutdown {}),
    };
    encode(
        &m.from,
        pb::envelope::Kind::Control(pb::Control {
            target: m.target,
            command: Some(command),
        }),
    )
}

fn control_from_pb(c: Option<pb::control::Command>) -> Option<Control> {
    use pb::control::Command;
    Some(match c? {
        Command::NodeInfo(n) => Control::NodeInfo(NodeInfo {
            uid: n.uid,
            name: n.name,
            version: n.version,
            num_clients: n.num_clients,
            num_users: n.num_users,
            num_subs: n.num_subs,
            num_channels: n.num_channels,
            uptime: n.uptime,
        }),
        Command::Subscribe(s) => Control::Subscribe(SubscribeUser {
            user: s.user,
            channel: s.channel,
            client: s.client,
            session: s.session,
            info: s.info,
            data: s.data,
            expire_at: s.expire_at,
            recover_since: s.recover_since.map(|p| StreamPosition {
                offset: p.offset,
                epoch: p.epoch,
            }),
            override_options: SubscribeOverride {
                presence: s.presence,
                join_leave: s.join_leave,
                force_push_join_leave: s.force_push_join_leave,
                force_positioning: s.force_positioning,
                force_recovery: s.force_recovery,
            },
        }),
        Command::Unsubscribe(u) => Control::Unsubscribe(UnsubscribeUser {
            user: u.user,
            channel: u.channel,
            client: u.client,
            session: u.session,
        }),
        Command::Disconnect(d) => Control::Disconnect(DisconnectUser {
            user: d.user,
            client: d.client,
            session: d.session,
            whitelist: d.whitelist,
            disconnect: Disconnect::new(u16::try_from(d.code).unwrap_or(3000), d.reason),
        }),
        Command::Refresh(r) => Control::Refresh(RefreshUser {
            user: r.user,
            client: r.client,
            session: r.session,
            expired: r.expired,
            expire_at: r.expire_at,
            info: r.info,
        }),
        Command::SurveyRequest(r) => Control::SurveyRequest(SurveyRequest {
            id: r.id,
            op: SurveyOp::from_name(&r.op),
            data: r.data,
        }),
        Command::SurveyResponse(r) => Control::SurveyResponse(SurveyResponse {
            id: r.id,
            data: r.data,
            error: r.error,
        }),
        Command::Shutdown(_) => Control::Shutdown,
        // Raw extensions are not produced by this version.
        Command::Raw(_) => return None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn frame_round_trip() {
        let p = Publication {
            data: Bytes::from_static(b"{\"a\":1}"),
            // "Delta-compressible" crosses the backplane so every node's hub can decide.
            delta: true,
            ..Publication::default()
        };
        let env = encode_publication("n1", "chat:1", p.clone());
        let mut f = b"c1:42:abcdEFGH:".to_vec();
        f.extend_from_slice(&env);
        match decode_frame(&f).unwrap() {
            Delivery::Publication {
                channel,
                publication,
                epoch,
                ..
            } => {
                assert_eq!(channel, "chat:1");
                assert_eq!(epoch, "abcdEFGH");
                assert_eq!(publication.offset, 42);
                assert_eq!(publication.data, p.data);
                assert!(publication.delta);
            }
            other => panic!("{other:?}"),
        }
        assert!(decode_frame(b"garbage").is_err());
        assert!(decode_frame(b"c1:1:x:\xff\xff\xff").is_err());
        assert!(decode_frame(b"c1:0::").is_err());
    }

    /// Every control command survives the backplane unchanged (the port's types are what
    /// the other node gets).
    #[test]
    fn control_round_trip() {
        let controls = [
            Control::NodeInfo(NodeInfo {
                uid: "n1".into(),
                name: "node one".into(),
                version: "1.2.3".into(),
                num_clients: 4,
                num_users: 3,
                num_subs: 9,
                num_channels: 2,
                uptime: 77,
            }),
            Control::Subscribe(SubscribeUser {
                user: "u".into(),
                channel: "chat:a".into(),
                client: "c".into(),
                session: "s".into(),
                info: Bytes::from_static(b"{\"i\":1}"),
                data: Bytes::from_static(b"[1]"),
                expire_at: 1_900_000_000,
                recover_since: Some(StreamPosition {
                    offset: 5,
                    epoch: "e".into(),
                }),
                override_options: SubscribeOverride {
                    presence: Some(false),
                    join_leave: None,
                    force_push_join_leave: Some(true),
                    force_positioning: None,
                    force_recovery: Some(true),
                },
            }),
            Control::Unsubscribe(UnsubscribeUser {
                user: "u".into(),
                channel: "chat:a".into(),
                client: String::new(),
                session: "s".into(),
            }),
            Control::Disconnect(DisconnectUser {
                user: "u".into(),
                client: "c".into(),
                session: String::new(),
                whitelist: vec!["keep".into()],
                disconnect: Disconnect::new(4500, "banned"),
            }),
            Control::Refresh(RefreshUser {
                user: "u".into(),
                client: String::new(),
                session: String::new(),
                expired: false,
                expire_at: 1_900_000_000,
                info: Some(Bytes::from_static(b"{\"n\":2}")),
            }),
            Control::Refresh(RefreshUser {
                user: "u".into(),
                expired: true,
                ..RefreshUser::default()
            }),
            Control::SurveyRequest(SurveyRequest {
                id: 9,
                op: SurveyOp::Presence,
                data: Bytes::from_static(b"chat:a"),
            }),
            Control::SurveyResponse(SurveyResponse {
                id: 9,
                data: Bytes::new(),
                error: "unknown survey".into(),
            }),
            Control::Shutdown,
        ];
        for control in controls {
            let message = ControlMessage {
                from: "n1".into(),
                target: "n2".into(),
                control,
            };
            let frame = frame(&encode_control(message.clone()));
            match decode_frame(&frame).unwrap() {
                Delivery::Control(back) => assert_eq!(back, message),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn unknown_survey_ops_decode_as_unknown() {
        let env = encode(
            "n1",
            pb::envelope::Kind::Control(pb::Control {
                target: String::new(),
                command: Some(pb::control::Command::SurveyRequest(pb::SurveyRequest {
                    id: 1,
                    op: "future_op".into(),
                    data: Bytes::new(),
                })),
            }),
        );
        match decode_frame(&frame(&env)).unwrap() {
            Delivery::Control(m) => assert_eq!(
                m.control,
                Control::SurveyRequest(SurveyRequest {
                    id: 1,
                    op: SurveyOp::Unknown,
                    data: Bytes::new(),
                })
            ),
            other => panic!("{other:?}"),
        }
    }
}
