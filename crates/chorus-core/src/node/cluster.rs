//! What makes several nodes one server: heartbeats into a registry of live nodes (for the
//! cluster-wide `info`), control commands applied to local connections, surveys answered and
//! collected (for the cluster-wide `channels`; presence in [`super::presence`]), and
//! re-checking positions after the broker may have lost deliveries.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Node;
use crate::broker::HistoryQuery;
use crate::channel;
use crate::control::{Control, ControlMessage, NodeInfo, SurveyOp, SurveyRequest, SurveyResponse};

/// How often a node announces itself.
pub const NODE_INFO_INTERVAL: Duration = Duration::from_secs(3);
/// A node not heard from for this long is dropped from the registry.
pub const NODE_INFO_TTL: Duration = Duration::from_secs(10);
/// How long a survey waits for the other nodes' answers.
pub const SURVEY_TIMEOUT: Duration = Duration::from_secs(3);

fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// One node's answer to a survey: (node id, data or error).
type Answer = (String, Result<Bytes, String>);

/// Registry of live nodes and the surveys in flight.
#[derive(Debug, Default)]
pub(crate) struct Cluster {
    nodes: dashmap::DashMap<String, (NodeInfo, Instant)>,
    /// Surveys in flight: each answer as (node, data) or (node, error).
    surveys: dashmap::DashMap<u64, mpsc::UnboundedSender<Answer>>,
    next_survey: std::sync::atomic::AtomicU64,
}

impl Node {
    /// Starts the heartbeat task (owned by the node, ends on shutdown).
    pub(crate) fn start_cluster_tasks(&self) {
        let node = self.clone();
        self.spawn(async move {
            let mut tick = tokio::time::interval(NODE_INFO_INTERVAL);
            loop {
                tick.tick().await;
                let info = node.local_info();
                node.cluster()
                    .nodes
                    .insert(info.uid.clone(), (info.clone(), Instant::now()));
                node.cluster()
                    .nodes
                    .retain(|_, (_, seen)| seen.elapsed() < NODE_INFO_TTL);
                if let Err(e) = node.send_control("", Control::NodeInfo(info)).await {
                    tracing::debug!(error = %e, "node info publish failed");
                }
            }
        });
    }

    pub(crate) async fn send_control(
        &self,
        target: &str,
        control: Control,
    ) -> Result<(), crate::broker::BrokerError> {
        self.broker()
            .publish_control(ControlMessage {
                from: self.id().to_string(),
                target: target.to_string(),
                control,
            })
            .await?;
        crate::metrics::node_sent(crate::metrics::MessageType::Control);
        Ok(())
    }

    /// This node's entry of `info`.
    pub(crate) fn local_info(&self) -> NodeInfo {
        let hub = self.hub();
        let counts = hub.channel_counts();
        NodeInfo {
            uid: self.id().to_string(),
            name: self.options().name.clone(),
            version: self.options().version.clone(),
            num_clients: saturating_u32(hub.num_clients()),
            num_users: saturating_u32(hub.num_users()),
            num_subs: counts.values().copied().fold(0u32, u32::saturating_add),
            num_channels: saturating_u32(counts.len()),
            uptime: u32::try_from(self.uptime().as_secs()).unwrap_or(u32::MAX),
        }
    }

    /// Live nodes (this one first, fresh).
    pub(crate) fn cluster_nodes(&self) -> Vec<NodeInfo> {
        let mut out = vec![self.local_info()];
        for e in self.cluster().nodes.iter() {
            let (info, seen) = e.value();
            if info.uid != self.id() && seen.elapsed() < NODE_INFO_TTL {
                out.push(info.clone());
            }
        }
        out
    }

    /// A new survey id and the receiver of its answers (remove the id from
    /// `cluster().surveys` when done).
    fn open_survey(&self) -> (u64, mpsc::UnboundedReceiver<Answer>) {
        let id = self
            .cluster()
            .next_survey
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        self.cluster().surveys.insert(id, tx);
        (id, rx)
    }

    /// Asks every other live node and collects their answers (at most [`SURVEY_TIMEOUT`]).
    pub(super) async fn survey(&self, op: SurveyOp, data: Bytes) -> Vec<Bytes> {
        let others: std::collections::HashSet<String> = self
            .cluster_nodes()
            .into_iter()
            .map(|n| n.uid)
            .filter(|id| id != self.id())
            .collect();
        if others.is_empty() {
            return Vec::new();
        }
        let (id, mut rx) = self.open_survey();
        let request = Control::SurveyRequest(SurveyRequest { id, op, data });
        let mut answers = Vec::new();
        if self.send_control("", request).await.is_ok() {
            let deadline = Instant::now() + SURVEY_TIMEOUT;
            let mut pending = others;
            while !pending.is_empty() {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some((from, answer))) => {
                        if pending.remove(&from) {
                            // A node that failed to answer counts as answered, with nothing.
                            answers.extend(answer.ok());
                        }
                    }
                    _ => break,
                }
            }
        }
        self.cluster().surveys.remove(&id);
        answers
    }

    /// Asks one live node (`target`) and waits at most [`SURVEY_TIMEOUT`] for its answer.
    async fn ask(
        &self,
        target: &str,
        op: SurveyOp,
        data: Bytes,
    ) -> Result<Bytes, crate::emulation::ForwardError> {
        use crate::emulation::ForwardError;
        let live = target != self.id()
            && self.cluster().nodes.get(target).is_some_and(|e| {
                let (_, seen) = e.value();
                seen.elapsed() < NODE_INFO_TTL
            });
        if !live {
            return Err(ForwardError::UnknownNode);
        }
        let (id, mut rx) = self.open_survey();
        let request = Control::SurveyRequest(SurveyRequest { id, op, data });
        let result = match self.send_control(target, request).await {
            Err(e) => Err(ForwardError::Broker(e)),
            Ok(()) => {
                let deadline = Instant::now() + SURVEY_TIMEOUT;
                loop {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some((from, answer))) if from == target => {
                            break answer.map_err(|e| ForwardError::from_wire(&e));
                        }
                        Ok(Some(_)) => continue,
                        _ => break Err(ForwardError::NoAnswer),
                    }
                }
            }
        };
        self.cluster().surveys.remove(&id);
        result
    }

    /// Runs the commands of an `/emulation` request on the node `target` that holds the
    /// session (see [`crate::emulation`]): returns once that node ran them.
    pub async fn forward_emulation(
        &self,
        target: &str,
        session: &str,
        protocol: chorus_protocol::Protocol,
        data: &[u8],
    ) -> Result<(), crate::emulation::ForwardError> {
        // A session id longer than 64 KiB is no session of ours.
        let Some(request) = crate::emulation::encode(session, protocol, data) else {
            return Ok(());
        };
        self.ask(target, SurveyOp::Emulation, request).await?;
        Ok(())
    }

    /// Channel → subscribed clients on every live node.
    pub(crate) async fn cluster_channels(&self) -> HashMap<String, u32> {
        let mut counts = self.hub().channel_counts();
        for data in self.survey(SurveyOp::Channels, Bytes::new()).await {
            let theirs: HashMap<String, u32> = serde_json::from_slice(&data).unwrap_or_default();
            for (ch, n) in theirs {
                *counts.entry(ch).or_insert(0) += n;
            }
        }
        counts
    }

    /// Applies a control command from the broker.
    pub(crate) fn handle_control(&self, message: ControlMessage) {
        if !message.target.is_empty() && message.target != self.id() {
            return;
        }
        let own = message.from == self.id();
        match message.control {
            Control::NodeInfo(info) => {
                if !own {
                    let from = message.from;
                    let known = self
                        .cluster()
                        .nodes
                        .insert(info.uid.clone(), (info, Instant::now()))
                        .is_some();
                    if !known {
                        // A node we did not know: introduce ourselves at once instead of at
                        // our next heartbeat, so a starting cluster converges in one round trip.
                        let node = self.clone();
                        self.spawn(async move {
                            let info = Control::NodeInfo(node.local_info());
                            let _ = node.send_control(&from, info).await;
                        });
                    }
                }
            }
            Control::Shutdown => {
                self.cluster().nodes.remove(&message.from);
            }
            // User operations were already applied locally by the node that sent them.
            _ if own => {}
            Control::Subscribe(op) => {
                let node = self.clone();
                self.spawn(async move { node.subscribe_local(&op).await });
            }
            Control::Unsubscribe(op) => {
                let node = self.clone();
                self.spawn(async move { node.unsubscribe_local(&op).await });
            }
            Control::Disconnect(op) => self.disconnect_local(&op),
            Control::Refresh(op) => self.refresh_local(&op),
            Control::SurveyRequest(SurveyRequest { id, op, data }) => {
                let node = self.clone();
                let to = message.from;
                self.spawn(async move {
                    let (data, error) = node.answer_survey(op, data).await;
                    let reply = Control::SurveyResponse(SurveyResponse { id, data, error });
                    if let Err(e) = node.send_control(&to, reply).await {
                        tracing::debug!(error = %e, "survey reply failed");
                    }
                });
            }
            Control::SurveyResponse(SurveyResponse { id, data, error }) => {
                if let Some(tx) = self.cluster().surveys.get(&id) {
                    let answer = if error.is_empty() {
                        Ok(data)
                    } else {
                        Err(error)
                    };
                    let _ = tx.send((message.from, answer));
                }
            }
        }
    }

    async fn answer_survey(&self, op: SurveyOp, data: Bytes) -> (Bytes, String) {
        match op {
            SurveyOp::Channels => (
                Bytes::from(serde_json::to_vec(&self.hub().channel_counts()).unwrap_or_default()),
                String::new(),
            ),
            SurveyOp::Presence | SurveyOp::UserStatus => {
                self.answer_presence_survey(op, &data).await
            }
            SurveyOp::Emulation => crate::emulation::answer(self.session_sink(), data).await,
            SurveyOp::Unknown => (Bytes::new(), "unknown survey".to_string()),
        }
    }

    /// The broker may have lost deliveries: subscribers of history channels whose position is
    /// behind the stream top get unsubscribe 2500 and recover; subscribers of channels without
    /// history cannot be told nothing was lost, so they are told to resubscribe too.
    pub(crate) fn handle_deliveries_lost(&self) {
        let node = self.clone();
        self.spawn(async move {
            let channels: Vec<String> = node.hub().channel_counts().into_keys().collect();
            for ch in channels {
                let Ok(options) = channel::resolve(&node.options().channel, &ch).cloned() else {
                    node.hub().mark_channel_lost(&ch);
                    continue;
                };
                if !options.history_enabled() {
                    node.hub().mark_channel_lost(&ch);
                    continue;
                }
                let query = HistoryQuery {
                    since: None,
                    limit: Some(0),
                    reverse: false,
                    meta_ttl: node.meta_ttl(&options),
                };
                match node.broker().history(&ch, query).await {
                    Ok(page) => node.hub().mark_behind_lost(&ch, &page.position),
                    Err(_) => node.hub().mark_channel_lost(&ch),
                }
            }
        });
    }

    /// Tells the other nodes this one is leaving (best effort).
    pub(crate) async fn announce_shutdown(&self) {
        let _ = self.send_control("", Control::Shutdown).await;
    }
}
