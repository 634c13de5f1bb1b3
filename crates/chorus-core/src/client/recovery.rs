//! Reading a new subscription's stream position: the top of the stream, or the publications
//! a recovering client missed (stream mode), or the channel's latest publication (cache mode).
//! Part of the subscribe sequence in [`super::subscribe`] (its step 3).

use chorus_protocol::codes;
use chorus_protocol::{StreamPosition, SubscribeResult};

use super::subscribe::SubscribeSpec;
use super::{Client, Fail};
use crate::broker::{BrokerError, HistoryQuery};
use crate::hub::delta::recovered_for;
use crate::metrics;
use crate::options::RecoveryMode;

impl Client {
    /// Reads the stream position (and missed publications when recovering) into `result`.
    /// Returns the position the client is at once it has processed the reply.
    pub(super) async fn read_position(
        &self,
        spec: &SubscribeSpec,
        result: &mut SubscribeResult,
    ) -> Result<(u64, String), Fail> {
        let node = &self.node;
        let broker = node.broker();
        let meta_ttl = node.meta_ttl(&spec.options);
        result.positioned = true;
        result.recoverable = spec.recoverable;
        let top_only = HistoryQuery {
            since: None,
            limit: Some(0),
            reverse: false,
            meta_ttl,
        };
        let Some(since) = spec.recover.clone() else {
            let page = broker
                .history(&spec.channel, top_only)
                .await
                .map_err(|_| Fail::from(codes::ERROR_INTERNAL))?;
            result.offset = page.position.offset;
            result.epoch = page.position.epoch.clone();
            return Ok((page.position.offset, page.position.epoch));
        };
        result.was_recovering = true;
        if spec.options.force_recovery_mode == RecoveryMode::Cache {
            return self.read_latest(spec, since, result).await;
        }
        let limit = node.options().client.recovery_max_publication_limit;
        let query = HistoryQuery {
            since: Some(since.clone()),
            limit: Some(limit),
            reverse: false,
            meta_ttl,
        };
        let (publications, top) = match broker.history(&spec.channel, query).await {
            Ok(page) => (page.publications, page.position),
            Err(BrokerError::UnrecoverablePosition) => {
                let page = broker
                    .history(&spec.channel, top_only)
                    .await
                    .map_err(|_| Fail::from(codes::ERROR_INTERNAL))?;
                (Vec::new(), page.position)
            }
            Err(_) => return Err(codes::ERROR_INTERNAL.into()),
        };
        let epoch_ok = since.epoch.is_empty() || since.epoch == top.epoch;
        let recovered = epoch_ok
            && match (publications.first(), publications.last()) {
                (None, _) => top.offset == since.offset,
                (Some(first), Some(last)) => {
                    first.offset == since.offset + 1 && last.offset == top.offset
                }
                _ => false,
            };
        metrics::recover(recovered);
        result.epoch = top.epoch.clone();
        if recovered {
            result.recovered = true;
            result.offset = since.offset;
            result.publications = recovered_for(publications, spec.delta, self.params.protocol);
        } else if spec.reject_unrecovered {
            return Err(codes::ERROR_UNRECOVERABLE_POSITION.into());
        } else {
            result.offset = top.offset;
        }
        Ok((top.offset, top.epoch))
    }

    /// Cache-mode recovery: the channel's latest publication when the client is behind it (or
    /// on another epoch), nothing when it is not; always recovered — the latest publication is
    /// the state. Returns the position the client is at once it has processed the reply.
    async fn read_latest(
        &self,
        spec: &SubscribeSpec,
        since: StreamPosition,
        result: &mut SubscribeResult,
    ) -> Result<(u64, String), Fail> {
        let query = HistoryQuery {
            since: None,
            limit: Some(1),
            reverse: true,
            meta_ttl: self.node.meta_ttl(&spec.options),
        };
        let page = self
            .node
            .broker()
            .history(&spec.channel, query)
            .await
            .map_err(|_| Fail::from(codes::ERROR_INTERNAL))?;
        let top = page.position;
        let same_epoch = since.epoch == top.epoch;
        result.epoch = top.epoch.clone();
        result.recovered = true;
        result.offset = if same_epoch { since.offset } else { 0 };
        match page.publications.into_iter().next() {
            Some(latest) if !same_epoch || latest.offset > since.offset => {
                result.publications = recovered_for(vec![latest], spec.delta, self.params.protocol);
            }
            Some(_) => {}
            // Nothing kept (expired, or never published): the client keeps what it has.
            None if same_epoch => {}
            None => result.offset = top.offset,
        }
        metrics::recover(true);
        Ok((top.offset, top.epoch))
    }
}
