//! Command dispatch and the simple commands: publish, presence, presence_stats, history, and
//! the ones chorus answers with the protocol's "not available" codes (send, ping). (`rpc` is
//! in `hooks.rs`.)

use chorus_protocol::codes;
use chorus_protocol::{
    Command, HistoryRequest, HistoryResult, Method, PresenceRequest, PresenceResult,
    PresenceStatsRequest, Protocol, Publication, PublishRequest, Reply,
};

use super::{Client, Fail};
use crate::broker::{check_history_since, BrokerError, HistoryQuery};
use crate::channel::{self, Asker};
use crate::metrics;
use crate::options::ChannelOptions;
use crate::payload::{self, Source};

impl Client {
    /// Runs one command of kind `method` (`cmd.method()`, decided once by the caller). `Ok(Some)`
    /// is a reply to queue; `Ok(None)` means the handler queued its own reply (connect and
    /// subscribe must order pushes after it).
    pub(super) async fn run_command(
        &self,
        method: Method,
        cmd: Command,
        connected: bool,
    ) -> Result<Option<Reply>, Fail> {
        let id = cmd.id;
        // `method` names a field that is set: the defaults below are never used.
        match method {
            Method::Connect => {
                if connected {
                    return Err(codes::DISCONNECT_BAD_REQUEST.into());
                }
                let req = cmd.connect.unwrap_or_default();
                self.cmd_connect(id, req).await.map(|()| None)
            }
            Method::Subscribe => {
                let req = cmd.subscribe.unwrap_or_default();
                self.cmd_subscribe(id, req).await.map(|()| None)
            }
            Method::Unsubscribe => {
                let req = cmd.unsubscribe.unwrap_or_default();
                self.cmd_unsubscribe(id, req).await.map(Some)
            }
            Method::Publish => {
                let req = cmd.publish.unwrap_or_default();
                self.cmd_publish(id, req).await.map(Some)
            }
            Method::Presence => {
                let req = cmd.presence.unwrap_or_default();
                self.cmd_presence(id, req).await.map(Some)
            }
            Method::PresenceStats => {
                let req = cmd.presence_stats.unwrap_or_default();
                self.cmd_presence_stats(id, req).await.map(Some)
            }
            Method::History => {
                let req = cmd.history.unwrap_or_default();
                self.cmd_history(id, req).await.map(Some)
            }
            Method::Refresh => {
                let req = cmd.refresh.unwrap_or_default();
                self.cmd_refresh(id, req).await.map(Some)
            }
            Method::SubRefresh => {
                let req = cmd.sub_refresh.unwrap_or_default();
                self.cmd_sub_refresh(id, req).await.map(Some)
            }
            Method::Rpc => {
                let req = cmd.rpc.unwrap_or_default();
                self.cmd_rpc(id, req).await.map(Some)
            }
            // Protocol v2 pings are server-initiated; the command form is not available.
            Method::Ping => Err(codes::ERROR_NOT_AVAILABLE.into()),
            // No asynchronous message handler: the protocol answers with 3508.
            Method::Send => Err(codes::DISCONNECT_NOT_AVAILABLE.into()),
            // Pongs never get here (`dispatch` handles them); an empty command with an id does.
            Method::Pong | Method::Unknown => {
                metrics::bad_frame("unknown_command");
                Err(codes::DISCONNECT_BAD_REQUEST.into())
            }
        }
    }

    /// Resolves a channel and who is asking about it.
    fn channel_asker(&self, channel: &str) -> Result<(ChannelOptions, Asker), Fail> {
        if channel.is_empty() {
            return Err(codes::DISCONNECT_BAD_REQUEST.into());
        }
        let options = channel::resolve(&self.node.options().channel, channel)?.clone();
        let st = self.lock_state();
        let asker = Asker {
            anonymous: st.user.is_empty(),
            subscribed: st
                .subs
                .get(channel)
                .is_some_and(|s| !s.subscriber.is_lost()),
            insecure: self.node.options().client.insecure,
        };
        Ok((options, asker))
    }

    async fn cmd_publish(&self, id: u32, req: PublishRequest) -> Result<Reply, Fail> {
        let (options, asker) = self.channel_asker(&req.channel)?;
        if req.data.is_empty() {
            return Err(codes::ERROR_BAD_REQUEST.into());
        }
        // With a publish hook the hook is the only permission check.
        if !options.publish_proxy_enabled && !channel::can_publish(&options, asker) {
            return Err(codes::ERROR_PERMISSION_DENIED.into());
        }
        let max_depth = self.node.options().client.json_max_depth;
        let binary = options.allow_binary_data;
        payload::check_publication(&req.data, binary, max_depth, Source::ClientPublish)
            .map_err(|_| Fail::from(codes::ERROR_BAD_REQUEST))?;
        let hooked = match options.publish_proxy_enabled {
            true => {
                self.publish_via_proxy(&options, &req.channel, &req.data)
                    .await?
            }
            false => None,
        };
        let chan_info = self
            .lock_state()
            .subs
            .get(req.channel.as_str())
            .map(|s| s.chan_info.clone())
            .unwrap_or_default();
        let info = self.info(chan_info);
        if !binary {
            // The publisher's info travels with the publication to every subscriber.
            for part in [&info.conn_info, &info.chan_info] {
                payload::check_counted(part, max_depth, Source::Info)
                    .map_err(|_| Fail::from(codes::ERROR_BAD_REQUEST))?;
            }
        }
        let (data, skip_history, tags, key, delta) = match hooked {
            Some(r) => (
                r.data.unwrap_or(req.data),
                r.skip_history,
                r.tags,
                (!r.idempotency_key.is_empty()).then_some(r.idempotency_key),
                r.delta,
            ),
            // As Centrifugo: with a publish hook only its result marks a publication
            // delta-compressible; the namespace's `delta_publish` is not consulted.
            None => (
                req.data,
                false,
                Default::default(),
                None,
                options.delta_publish && !options.publish_proxy_enabled,
            ),
        };
        let publication = Publication {
            data,
            info: Some(info),
            tags,
            delta,
            ..Default::default()
        };
        let opts = self.node.publish_options(&options, skip_history, key);
        if let Err(e) = self
            .node
            .broker()
            .publish(&req.channel, publication, &opts)
            .await
        {
            tracing::warn!(error = %e, "client publish failed");
            return Err(codes::ERROR_INTERNAL.into());
        }
        metrics::publication("client");
        Ok(Reply {
            id,
            publish: Some(Default::default()),
            ..Default::default()
        })
    }

    /// A JSON connection cannot carry what a binary namespace holds (103).
    pub(super) fn check_can_carry(&self, options: &ChannelOptions) -> Result<(), Fail> {
        if options.allow_binary_data && self.params.protocol == Protocol::Json {
            return Err(codes::ERROR_PERMISSION_DENIED.into());
        }
        Ok(())
    }

    async fn cmd_presence(&self, id: u32, req: PresenceRequest) -> Result<Reply, Fail> {
        let (options, asker) = self.channel_asker(&req.channel)?;
        if !options.presence {
            return Err(codes::ERROR_NOT_AVAILABLE.into());
        }
        if !channel::can_presence(&options, asker) {
            return Err(codes::ERROR_PERMISSION_DENIED.into());
        }
        self.check_can_carry(&options)?;
        let presence = self
            .node
            .bounded_presence(&req.channel)
            .await
            .map_err(|e| Fail::from(e.code()))?;
        Ok(Reply {
            id,
            presence: Some(PresenceResult { presence }),
            ..Default::default()
        })
    }

    async fn cmd_presence_stats(&self, id: u32, req: PresenceStatsRequest) -> Result<Reply, Fail> {
        let (options, asker) = self.channel_asker(&req.channel)?;
        if !options.presence {
            return Err(codes::ERROR_NOT_AVAILABLE.into());
        }
        if !channel::can_presence(&options, asker) {
            return Err(codes::ERROR_PERMISSION_DENIED.into());
        }
        let stats = self
            .node
            .cluster_presence_stats(&req.channel)
            .await
            .map_err(|_| Fail::from(codes::ERROR_INTERNAL))?;
        Ok(Reply {
            id,
            presence_stats: Some(stats),
            ..Default::default()
        })
    }

    async fn cmd_history(&self, id: u32, req: HistoryRequest) -> Result<Reply, Fail> {
        let (options, asker) = self.channel_asker(&req.channel)?;
        if !options.history_enabled() {
            return Err(codes::ERROR_NOT_AVAILABLE.into());
        }
        if !channel::can_history(&options, asker) {
            return Err(codes::ERROR_PERMISSION_DENIED.into());
        }
        self.check_can_carry(&options)?;
        let max = self.node.options().client.history_max_publication_limit;
        let limit = match usize::try_from(req.limit) {
            Ok(n) if n <= max => n,
            _ => max,
        };
        check_history_since(req.reverse, req.since.as_ref())?;
        let query = HistoryQuery {
            since: req.since,
            limit: Some(limit),
            reverse: req.reverse,
            meta_ttl: self.node.meta_ttl(&options),
        };
        let page = match self.node.broker().history(&req.channel, query).await {
            Ok(p) => p,
            Err(BrokerError::UnrecoverablePosition) => {
                return Err(codes::ERROR_UNRECOVERABLE_POSITION.into())
            }
            Err(_) => return Err(codes::ERROR_INTERNAL.into()),
        };
        Ok(Reply {
            id,
            history: Some(HistoryResult {
                publications: page.publications,
                epoch: page.position.epoch,
                offset: page.position.offset,
            }),
            ..Default::default()
        })
    }
}
