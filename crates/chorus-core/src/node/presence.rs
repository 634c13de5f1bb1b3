//! Presence for the whole cluster. Each node is the source of truth for its own connections.
//! With a cluster-wide store (the presence service, [`PresenceStore::cluster_wide`]) reads go
//! to the store; with the in-process store the node asks every live node over the control
//! channel (a survey) and takes the union — exact, because a node that died stops answering
//! at once, and O(nodes) per call.
//!
//! Reads that cannot be answered exactly fail (error 100): never a stale or partial list.

use std::collections::HashMap;

use bytes::Bytes;
use chorus_protocol::prost::Message as _;
use chorus_protocol::{ClientInfo, PresenceResult, PresenceStatsResult};

use super::Node;
use crate::control::SurveyOp;
use crate::metrics;
use crate::presence::{PresenceError, UserStatus};

/// Why a bounded presence read gave no list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PresenceRead {
    #[error(transparent)]
    Store(#[from] PresenceError),
    /// More than `channel.presence_max_clients` present.
    #[error("too many present clients")]
    TooMany,
}

impl PresenceRead {
    /// The protocol error a client or API caller gets.
    pub(crate) fn code(&self) -> chorus_protocol::codes::ErrorCode {
        match self {
            PresenceRead::Store(_) => chorus_protocol::codes::ERROR_INTERNAL,
            PresenceRead::TooMany => {
                metrics::reply_too_large("presence", "error");
                chorus_protocol::codes::ERROR_LIMIT_EXCEEDED
            }
        }
    }
}

impl Node {
    fn presence_is_cluster_wide(&self) -> bool {
        self.presence_store().cluster_wide()
    }

    /// Presence of a channel across the cluster.
    pub(crate) async fn cluster_presence(
        &self,
        channel: &str,
    ) -> Result<HashMap<String, ClientInfo>, PresenceError> {
        let mut all = self.presence_store().get(channel).await?;
        if self.presence_is_cluster_wide() {
            return Ok(all);
        }
        let request = Bytes::copy_from_slice(channel.as_bytes());
        for data in self.survey(SurveyOp::Presence, request).await {
            if let Ok(theirs) = PresenceResult::decode(data.as_ref()) {
                all.extend(theirs.presence);
            }
        }
        Ok(all)
    }

    /// [`Node::cluster_presence`] bounded by `channel.presence_max_clients`: a channel with
    /// more present clients answers [`PresenceRead::TooMany`] (error 106) rather than a reply
    /// of unbounded size. The count is checked first (the local one, or the cluster's with a
    /// cluster-wide store), so a huge channel is refused without copying it.
    pub(crate) async fn bounded_presence(
        &self,
        channel: &str,
    ) -> Result<HashMap<String, ClientInfo>, PresenceRead> {
        let max = self.options().channel.presence_max_clients;
        if max > 0 {
            let counted = self.presence_store().stats(channel).await?;
            if usize::try_from(counted.num_clients).unwrap_or(usize::MAX) > max {
                return Err(PresenceRead::TooMany);
            }
        }
        let all = self.cluster_presence(channel).await?;
        if max > 0 && all.len() > max {
            return Err(PresenceRead::TooMany);
        }
        Ok(all)
    }

    /// Counts of clients and distinct users of a channel across the cluster.
    pub(crate) async fn cluster_presence_stats(
        &self,
        channel: &str,
    ) -> Result<PresenceStatsResult, PresenceError> {
        if self.presence_is_cluster_wide() || self.cluster_nodes().len() == 1 {
            return self.presence_store().stats(channel).await;
        }
        let all = self.cluster_presence(channel).await?;
        let users: std::collections::HashSet<&str> =
            all.values().map(|i| i.user.as_str()).collect();
        Ok(PresenceStatsResult {
            num_clients: u32::try_from(all.len()).unwrap_or(u32::MAX),
            num_users: u32::try_from(users.len()).unwrap_or(u32::MAX),
        })
    }

    /// The status of each user across the cluster, in request order: online with its
    /// connections counted and channels merged over every node.
    pub(crate) async fn cluster_user_status(
        &self,
        users: &[String],
    ) -> Result<Vec<UserStatus>, PresenceError> {
        let mut statuses = self.presence_store().user_status(users).await?;
        if self.presence_is_cluster_wide() {
            return Ok(statuses);
        }
        let request = Bytes::from(serde_json::to_vec(users).unwrap_or_default());
        for data in self.survey(SurveyOp::UserStatus, request).await {
            let Ok(theirs) = serde_json::from_slice::<Vec<UserStatus>>(&data) else {
                continue;
            };
            for (mine, other) in statuses.iter_mut().zip(&theirs) {
                if mine.user == other.user {
                    mine.merge(other);
                }
            }
        }
        Ok(statuses)
    }

    /// This node's answer to another node's presence survey.
    pub(super) async fn answer_presence_survey(
        &self,
        op: SurveyOp,
        data: &[u8],
    ) -> (Bytes, String) {
        let store = self.presence_store();
        let answer = match op {
            SurveyOp::Presence => {
                let channel = String::from_utf8_lossy(data);
                store
                    .get(&channel)
                    .await
                    .map(|presence| Bytes::from(PresenceResult { presence }.encode_to_vec()))
            }
            SurveyOp::UserStatus => {
                let users: Vec<String> = serde_json::from_slice(data).unwrap_or_default();
                store
                    .user_status(&users)
                    .await
                    .map(|s| Bytes::from(serde_json::to_vec(&s).unwrap_or_default()))
            }
            _ => return (Bytes::new(), "not a presence survey".to_string()),
        };
        match answer {
            Ok(data) => (data, String::new()),
            Err(e) => (Bytes::new(), e.to_string()),
        }
    }
}
