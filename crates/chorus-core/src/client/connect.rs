//! The `connect` command: authentication, server-side subscriptions, the connect reply.

use std::collections::HashMap;
use std::sync::Arc;

use chorus_protocol::codes;
use chorus_protocol::{ConnectRequest, ConnectResult, Reply, StreamPosition};

use super::subscribe::{unrecover, Prepared, SubscribeSpec};
use super::{Client, Fail, TokenKind};
use crate::api::{DisconnectRequest, DisconnectSpec, PresenceStatsRequest};
use crate::auth::{ConnectionClaims, ServerSubOptions, TokenError};
use crate::channel;
use crate::clock::{self, ttl_until};
use crate::metrics;
use crate::payload;

impl Client {
    pub(super) async fn cmd_connect(&self, id: u32, req: ConnectRequest) -> Result<(), Fail> {
        let node = self.node.clone();
        let opts = &node.options().client;
        payload::check_command_data(&req.data, opts.json_max_depth)
            .map_err(|_| Fail::from(codes::ERROR_BAD_REQUEST))?;
        self.keep_connect_headers(&req);
        let mut reply_data = bytes::Bytes::new();
        let mut claims = if !req.token.is_empty() {
            crate::auth::connection_claims(&**node.tokens(), &req.token)
                .await
                .map_err(|e| {
                    if let TokenError::Invalid(reason) = &e {
                        tracing::debug!(client = %self.id, %reason, "invalid connection token");
                    }
                    TokenKind::Connection.refusal(&e)
                })?
        } else if let Some(proxy) = node.proxies().connect().cloned() {
            let (claims, data) = self.connect_via_proxy(&proxy, &req).await?;
            reply_data = data;
            claims
        } else if opts.insecure {
            ConnectionClaims::default()
        } else {
            tracing::debug!(client = %self.id, "client credentials not found");
            return Err(codes::DISCONNECT_BAD_REQUEST.into());
        };
        let expires_at = claims.expires_at();
        if clock::is_expired(expires_at) {
            return Err(codes::ERROR_TOKEN_EXPIRED.into());
        }
        let user: Arc<str> = Arc::from(claims.user.as_str());
        if opts.user_connection_limit > 0
            && !user.is_empty()
            && node.hub().user_connection_count(&user) >= opts.user_connection_limit
        {
            return Err(codes::DISCONNECT_CONNECTION_LIMIT.into());
        }
        {
            let mut st = self.lock_state();
            st.connected = true;
            st.user = user.clone();
            st.conn_info = claims.info.clone();
            st.expires_at = expires_at;
        }
        // The token's `meta` claim or the connect hook's `meta` result.
        if let Some(meta) = claims.meta.take() {
            self.set_meta(meta);
        }
        node.hub().add_user(user.clone(), self.id.clone());

        // Server-side subscriptions: the `channels` claim, then `subs` with options.
        let mut server_subs: Vec<(String, ServerSubOptions)> = claims
            .channels
            .iter()
            .map(|c| (c.clone(), ServerSubOptions::default()))
            .collect();
        let mut extra: Vec<(String, ServerSubOptions)> = claims.subs.into_iter().collect();
        extra.sort_by(|a, b| a.0.cmp(&b.0));
        for (ch, o) in extra {
            match server_subs.iter_mut().find(|(c, _)| *c == ch) {
                Some(existing) => existing.1 = o,
                None => server_subs.push((ch, o)),
            }
        }
        let personal = &opts.subscribe_to_user_personal_channel;
        if personal.enabled && !user.is_empty() {
            let ch = personal.channel(&node.options().channel, &user);
            if personal.single_connection {
                self.close_other_connections(&ch, &user).await?;
            }
            if !server_subs.iter().any(|(c, _)| *c == ch) {
                server_subs.push((ch, ServerSubOptions::default()));
            }
        }
        if server_subs.len() > opts.channel_limit {
            return Err(codes::DISCONNECT_CHANNEL_LIMIT.into());
        }
        let mut results = HashMap::new();
        let mut prepared = Vec::new();
        for (ch, sub_opts) in server_subs {
            let ns_opts = match channel::resolve(&node.options().channel, &ch) {
                Ok(o) => o.clone(),
                Err(e) => return Err(e.into()),
            };
            let recover = req
                .subs
                .get(&ch)
                .filter(|r| r.recover)
                .map(|r| StreamPosition {
                    offset: r.offset,
                    epoch: r.epoch.clone(),
                });
            let mut spec = SubscribeSpec::server_side(ch.clone(), ns_opts, &sub_opts, recover);
            // As Centrifugo: `connect.subs[ch].delta` asks for delta mode; an unknown or not
            // allowed type just leaves it off (no 3501 on this path).
            spec.delta = req
                .subs
                .get(&ch)
                .and_then(|r| crate::delta::DeltaType::parse(&r.delta))
                .is_some_and(|t| spec.options.allowed_delta_types.contains(&t));
            let (result, p) = self.subscribe_prepare(spec).await?;
            results.insert(ch, result);
            prepared.push(p);
        }

        let ping = opts.ping_interval.get().as_secs();
        // With a refresh hook the server refreshes at expiry: the client is not told to.
        let ttl = expires_at
            .filter(|_| node.proxies().refresh().is_none())
            .map(ttl_until);
        let session = self.lock_state().session.as_deref().map(str::to_owned);
        let result = ConnectResult {
            client: self.id.to_string(),
            node: if session.is_some() {
                node.id().to_owned()
            } else {
                String::new()
            },
            session: session.unwrap_or_default(),
            version: node.options().version.clone(),
            expires: ttl.is_some(),
            ttl: ttl.unwrap_or(0),
            subs: results,
            data: reply_data,
            ping: u32::try_from(ping).unwrap_or(u32::MAX),
            pong: ping > 0 && !opts.pong_timeout.is_zero(),
            time: if opts.connect_include_server_time {
                clock::unix_now_ms()
            } else {
                0
            },
        };
        self.send_connect_reply(id, result, &prepared)?;
        for p in prepared {
            self.subscribe_finish(p).await;
        }
        self.start_session_timers();
        self.schedule_expiry_check();
        Ok(())
    }

    /// `single_connection`: when the personal channel's presence shows other connections of
    /// `user`, closes them on every node with 3504, keeping this one. A presence or broker
    /// failure closes this connection with 3004 (the client reconnects).
    async fn close_other_connections(&self, personal: &str, user: &str) -> Result<(), Fail> {
        let api = self.node.api();
        let stats = api
            .presence_stats(PresenceStatsRequest {
                channel: personal.to_string(),
            })
            .await
            .map_err(|_| Fail::from(codes::DISCONNECT_SERVER_ERROR))?;
        if stats.num_clients == 0 {
            return Ok(());
        }
        let code = codes::DISCONNECT_CONNECTION_LIMIT;
        api.disconnect(DisconnectRequest {
            user: user.to_string(),
            whitelist: vec![self.id.to_string()],
            disconnect: Some(DisconnectSpec {
                code: u32::from(code.code),
                reason: code.reason.to_string(),
            }),
            ..Default::default()
        })
        .await
        .map_err(|_| Fail::from(codes::DISCONNECT_SERVER_ERROR))?;
        Ok(())
    }

    /// Queues the connect reply; recovered publications of server-side subscriptions over
    /// `client.reply_max_size` answer "not recovered" (see `send_subscribe_reply`, also for why
    /// this is synchronous).
    fn send_connect_reply(
        &self,
        id: u32,
        result: ConnectResult,
        prepared: &[Prepared],
    ) -> Result<(), Fail> {
        let mut reply = Reply {
            id,
            connect: Some(result),
            ..Default::default()
        };
        if self.send_reply(&reply).is_ok() {
            return Ok(());
        }
        if let Some(result) = reply.connect.as_mut() {
            for p in prepared {
                if let Some(sub) = result.subs.get_mut(&*p.subscriber.channel) {
                    unrecover(sub, p.offset);
                }
            }
        }
        if self.send_reply(&reply).is_err() {
            metrics::reply_too_large("connect", "error");
            return Err(codes::ERROR_LIMIT_EXCEEDED.into());
        }
        metrics::reply_too_large("connect", "unrecovered");
        Ok(())
    }

    pub(super) async fn cmd_refresh(
        &self,
        id: u32,
        req: chorus_protocol::RefreshRequest,
    ) -> Result<Reply, Fail> {
        if self.node.proxies().refresh().is_some() {
            // Refresh is server-side (the refresh hook): the client was told not to.
            return Err(codes::DISCONNECT_BAD_REQUEST.into());
        }
        // Outcomes as in Centrifugo: an expired token closes the connection (3005), an
        // invalid one or another user's disconnects (3500), a past `expire_at` answers 110.
        let claims = crate::auth::connection_claims(&**self.node.tokens(), &req.token)
            .await
            .map_err(|e| match e {
                TokenError::Expired => Fail::from(codes::DISCONNECT_EXPIRED),
                TokenError::Invalid(_) => Fail::from(codes::DISCONNECT_INVALID_TOKEN),
            })?;
        if *claims.user != *self.user() {
            return Err(codes::DISCONNECT_INVALID_TOKEN.into());
        }
        let expires_at = claims.expires_at();
        if clock::is_expired(expires_at) {
            return Err(codes::ERROR_EXPIRED.into());
        }
        {
            let mut st = self.lock_state();
            st.expires_at = expires_at;
            if !claims.info.is_empty() {
                st.conn_info = claims.info;
            }
        }
        self.schedule_expiry_check();
        let ttl = expires_at.map(ttl_until);
        Ok(Reply {
            id,
            refresh: Some(chorus_protocol::RefreshResult {
                client: self.id.to_string(),
                version: self.node.options().version.clone(),
                expires: ttl.is_some(),
                ttl: ttl.unwrap_or(0),
            }),
            ..Default::default()
        })
    }
}
