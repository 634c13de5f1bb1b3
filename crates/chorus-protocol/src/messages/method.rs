//! [`Method`]: what a client command asks for — one enum for dispatch, logs and metric labels.

use super::Command;

/// The kind of a client command. [`Command::method`] decides it once; the server dispatches on
/// it and labels its metrics with [`Method::name`], so both always agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Connect,
    Subscribe,
    Unsubscribe,
    Publish,
    Presence,
    PresenceStats,
    History,
    Ping,
    Send,
    Rpc,
    Refresh,
    SubRefresh,
    /// The empty command with id 0: the client's answer to a server ping.
    Pong,
    /// An empty command with an id: nothing the server could run.
    Unknown,
}

impl Method {
    /// Every method, the request kinds in field order first.
    pub const ALL: [Method; 14] = [
        Method::Connect,
        Method::Subscribe,
        Method::Unsubscribe,
        Method::Publish,
        Method::Presence,
        Method::PresenceStats,
        Method::History,
        Method::Ping,
        Method::Send,
        Method::Rpc,
        Method::Refresh,
        Method::SubRefresh,
        Method::Pong,
        Method::Unknown,
    ];

    /// The JSON name of the request field (`"presence_stats"`), `"pong"` or `"unknown"`; also
    /// the `method` label of the client command metrics.
    pub fn name(self) -> &'static str {
        match self {
            Method::Connect => "connect",
            Method::Subscribe => "subscribe",
            Method::Unsubscribe => "unsubscribe",
            Method::Publish => "publish",
            Method::Presence => "presence",
            Method::PresenceStats => "presence_stats",
            Method::History => "history",
            Method::Ping => "ping",
            Method::Send => "send",
            Method::Rpc => "rpc",
            Method::Refresh => "refresh",
            Method::SubRefresh => "sub_refresh",
            Method::Pong => "pong",
            Method::Unknown => "unknown",
        }
    }
}

impl Command {
    /// The command's method. The protocol does not use a `oneof` (for JSON friendliness), so
    /// several request fields may be set: the first one in field order wins. A command with
    /// no request is a pong when its id is 0, else [`Method::Unknown`].
    pub fn method(&self) -> Method {
        let set = [
            (self.connect.is_some(), Method::Connect),
            (self.subscribe.is_some(), Method::Subscribe),
            (self.unsubscribe.is_some(), Method::Unsubscribe),
            (self.publish.is_some(), Method::Publish),
            (self.presence.is_some(), Method::Presence),
            (self.presence_stats.is_some(), Method::PresenceStats),
            (self.history.is_some(), Method::History),
            (self.ping.is_some(), Method::Ping),
            (self.send.is_some(), Method::Send),
            (self.rpc.is_some(), Method::Rpc),
            (self.refresh.is_some(), Method::Refresh),
            (self.sub_refresh.is_some(), Method::SubRefresh),
        ];
        match set.into_iter().find(|(is_set, _)| *is_set) {
            Some((_, method)) => method,
            None if self.id == 0 => Method::Pong,
            None => Method::Unknown,
        }
    }

    /// A pong: the empty command (id 0, no request) a client sends in answer to a server ping.
    pub fn is_pong(&self) -> bool {
        self.method() == Method::Pong
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct() {
        let mut names: Vec<_> = Method::ALL.iter().map(|m| m.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Method::ALL.len());
    }

    #[test]
    fn first_field_wins() {
        let cmd = Command {
            id: 1,
            rpc: Some(Default::default()),
            refresh: Some(Default::default()),
            ..Default::default()
        };
        assert_eq!(cmd.method(), Method::Rpc);
        let cmd = Command {
            id: 1,
            connect: Some(Default::default()),
            sub_refresh: Some(Default::default()),
            ..Default::default()
        };
        assert_eq!(cmd.method(), Method::Connect);
        assert_eq!(Command::default().method(), Method::Pong);
        let empty_with_id = Command {
            id: 7,
            ..Default::default()
        };
        assert_eq!(empty_with_id.method(), Method::Unknown);
        assert!(!empty_with_id.is_pong());
    }
}
