//! Operations on a user's connections — `subscribe`, `unsubscribe`, `disconnect`, `refresh`.
//! A user's connections may live on any node: each operation is validated here, applied to
//! this node's connections at once, and sent over the control channel to every other node,
//! which applies it to its own (see `node/users.rs`). The call succeeds once it is applied
//! here and handed to the broker; what a connection does with it is not reported back.

use chorus_protocol::codes::{DisconnectCode, DISCONNECT_FORCE_NO_RECONNECT};

use super::publish::payload;
use super::{bad_request, channel_options, ApiError};
use super::{
    DisconnectRequest, DisconnectResult, DisconnectSpec, RefreshRequest, RefreshResult,
    SubscribeRequest, SubscribeResult, UnsubscribeRequest, UnsubscribeResult,
};
use crate::control::{Control, DisconnectUser, RefreshUser, SubscribeUser, UnsubscribeUser};
use crate::disconnect::Disconnect;
use crate::node::Node;
use crate::payload::{self as checks, Source};

/// Longest close reason a WebSocket close frame can carry (125-byte payload minus the code).
const MAX_CLOSE_REASON: usize = 123;

pub(super) async fn subscribe(
    node: &Node,
    req: SubscribeRequest,
) -> Result<SubscribeResult, ApiError> {
    if req.user.is_empty() || req.channel.is_empty() {
        return Err(bad_request());
    }
    let info = payload(req.info, &req.b64info)?;
    let data = payload(req.data, &req.b64data)?;
    let options = channel_options(node, &req.channel)?;
    if !options.allow_binary_data {
        // `info` reaches other subscribers in join/leave and presence; `data` reaches the
        // user's JSON connections in the subscribe push.
        let max_depth = node.options().client.json_max_depth;
        for part in [&info, &data] {
            checks::check_counted(part, max_depth, Source::Info).map_err(|_| bad_request())?;
        }
    }
    let op = SubscribeUser {
        user: req.user,
        channel: req.channel,
        client: req.client,
        session: req.session,
        info,
        data,
        expire_at: req.expire_at,
        recover_since: req.recover_since,
        override_options: req.override_options,
    };
    node.subscribe_local(&op).await;
    node.send_control("", Control::Subscribe(op)).await?;
    Ok(SubscribeResult {})
}

pub(super) async fn unsubscribe(
    node: &Node,
    req: UnsubscribeRequest,
) -> Result<UnsubscribeResult, ApiError> {
    if req.user.is_empty() || req.channel.is_empty() {
        return Err(bad_request());
    }
    channel_options(node, &req.channel)?;
    let op = UnsubscribeUser {
        user: req.user,
        channel: req.channel,
        client: req.client,
        session: req.session,
    };
    node.unsubscribe_local(&op).await;
    node.send_control("", Control::Unsubscribe(op)).await?;
    Ok(UnsubscribeResult {})
}

pub(super) async fn disconnect(
    node: &Node,
    req: DisconnectRequest,
) -> Result<DisconnectResult, ApiError> {
    if req.user.is_empty() {
        return Err(bad_request());
    }
    let op = DisconnectUser {
        disconnect: close_frame(req.disconnect.as_ref())?,
        user: req.user,
        client: req.client,
        session: req.session,
        whitelist: req.whitelist,
    };
    node.disconnect_local(&op);
    node.send_control("", Control::Disconnect(op)).await?;
    Ok(DisconnectResult {})
}

/// The close frame a `disconnect` sends: by default 3503 "force disconnect"; a custom code
/// must be one a server may send (3001–4999: 3000 means "no code", below are WebSocket's own)
/// and the reason must fit a close frame. Code 0 keeps 3503 with the given reason.
fn close_frame(spec: Option<&DisconnectSpec>) -> Result<Disconnect, ApiError> {
    let default: DisconnectCode = DISCONNECT_FORCE_NO_RECONNECT;
    let Some(spec) = spec else {
        return Ok(Disconnect::from(default));
    };
    if spec.reason.len() > MAX_CLOSE_REASON {
        return Err(bad_request());
    }
    if spec.code == 0 {
        let reason = if spec.reason.is_empty() {
            default.reason.to_owned()
        } else {
            spec.reason.clone()
        };
        return Ok(Disconnect {
            code: default.code,
            reason,
        });
    }
    match u16::try_from(spec.code) {
        Ok(code @ 3001..=4999) => Ok(Disconnect {
            code,
            reason: spec.reason.clone(),
        }),
        _ => Err(bad_request()),
    }
}

/// Connection refresh, decided by the server (Centrifugo's server-side refresh): `expired`
/// closes the connections with 3005; `expire_at` becomes their expiry (a time not in the
/// future closes them with 3005 now); `info` replaces their connection info. The info reaches
/// other clients through presence, join/leave and publications, so it must be JSON (bounded by
/// `client.json_max_depth`) whatever the namespaces allow.
pub(super) async fn refresh(node: &Node, req: RefreshRequest) -> Result<RefreshResult, ApiError> {
    if req.user.is_empty() || req.expire_at < 0 {
        return Err(bad_request());
    }
    let max_depth = node.options().client.json_max_depth;
    checks::check_counted(&req.info, max_depth, Source::Info).map_err(|_| bad_request())?;
    let op = RefreshUser {
        user: req.user,
        client: req.client,
        session: req.session,
        expired: req.expired,
        expire_at: req.expire_at,
        info: (!req.info.is_empty()).then_some(req.info),
    };
    node.refresh_local(&op);
    node.send_control("", Control::Refresh(op)).await?;
    Ok(RefreshResult {})
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn spec(code: u32, reason: &str) -> DisconnectSpec {
        DisconnectSpec {
            code,
            reason: reason.into(),
        }
    }

    #[test]
    fn close_frames() {
        assert_eq!(
            close_frame(None),
            Ok(Disconnect::new(3503, "force disconnect"))
        );
        assert_eq!(
            close_frame(Some(&spec(0, "bye"))),
            Ok(Disconnect::new(3503, "bye"))
        );
        assert_eq!(
            close_frame(Some(&spec(4500, "banned"))),
            Ok(Disconnect::new(4500, "banned"))
        );
        assert_eq!(
            close_frame(Some(&spec(3001, ""))),
            Ok(Disconnect::new(3001, ""))
        );
        for code in [1, 1000, 2999, 3000, 5000, 70_000] {
            assert_eq!(
                close_frame(Some(&spec(code, ""))),
                Err(bad_request()),
                "{code}"
            );
        }
        let long = "x".repeat(124);
        assert_eq!(close_frame(Some(&spec(4000, &long))), Err(bad_request()));
        assert!(close_frame(Some(&spec(4000, &long[..123]))).is_ok());
    }

    #[test]
    fn payload_prefers_base64() {
        let raw = Bytes::from_static(b"{\"a\":1}");
        assert_eq!(payload(raw.clone(), ""), Ok(raw.clone()));
        assert_eq!(payload(raw, "WzEsMl0="), Ok(Bytes::from_static(b"[1,2]")));
        assert_eq!(payload(Bytes::new(), "!!"), Err(bad_request()));
    }
}
