//! Channel names, namespaces and the permission rules of client commands.

use chorus_protocol::codes::{self, ErrorCode};

use crate::options::{ChannelConfig, ChannelOptions};

/// Resolves the options of a channel: `ns:rest` uses namespace `ns` (after stripping the
/// private prefix), a channel without the boundary uses `without_namespace`.
/// Errors: empty or too long → 107; unknown namespace → 102.
pub fn resolve<'a>(
    config: &'a ChannelConfig,
    channel: &str,
) -> Result<&'a ChannelOptions, ErrorCode> {
    if channel.is_empty() || channel.len() > config.max_length {
        return Err(codes::ERROR_BAD_REQUEST);
    }
    let name = channel
        .strip_prefix(config.private_prefix.as_str())
        .filter(|_| !config.private_prefix.is_empty())
        .unwrap_or(channel);
    match name.split_once(config.namespace_boundary.as_str()) {
        Some((ns, _)) if !config.namespace_boundary.is_empty() => config
            .namespaces
            .iter()
            .find(|n| n.name == ns)
            .map(|n| &n.options)
            .ok_or(codes::ERROR_UNKNOWN_CHANNEL),
        _ => Ok(&config.without_namespace),
    }
}

/// Whether the channel is private (`$` prefix): subscribing needs a subscription token.
pub fn is_private(config: &ChannelConfig, channel: &str) -> bool {
    !config.private_prefix.is_empty() && channel.starts_with(config.private_prefix.as_str())
}

/// For a user-limited channel (`name#u1,u2`), whether `user` is listed. `None` if the channel
/// is not user-limited.
pub fn user_allowed(config: &ChannelConfig, channel: &str, user: &str) -> Option<bool> {
    if config.user_boundary.is_empty() {
        return None;
    }
    let (_, users) = channel.rsplit_once(config.user_boundary.as_str())?;
    Some(
        !user.is_empty()
            && users
                .split(config.user_separator.as_str())
                .any(|u| u == user),
    )
}

/// Who is asking, for permission checks of client commands.
#[derive(Debug, Clone, Copy)]
pub struct Asker {
    pub anonymous: bool,
    pub subscribed: bool,
    pub insecure: bool,
}

pub fn can_publish(o: &ChannelOptions, a: Asker) -> bool {
    a.insecure
        || (a.subscribed && o.allow_publish_for_subscriber)
        || (!a.anonymous && o.allow_publish_for_client)
        || (a.anonymous && o.allow_publish_for_anonymous)
}

pub fn can_presence(o: &ChannelOptions, a: Asker) -> bool {
    a.insecure
        || (a.subscribed && o.allow_presence_for_subscriber)
        || (!a.anonymous && o.allow_presence_for_client)
        || (a.anonymous && o.allow_presence_for_anonymous)
}

pub fn can_history(o: &ChannelOptions, a: Asker) -> bool {
    a.insecure
        || (a.subscribed && o.allow_history_for_subscriber)
        || (!a.anonymous && o.allow_history_for_client)
        || (a.anonymous && o.allow_history_for_anonymous)
}

pub fn can_subscribe(o: &ChannelOptions, a: Asker) -> bool {
    a.insecure
        || (!a.anonymous && o.allow_subscribe_for_client)
        || (a.anonymous && o.allow_subscribe_for_anonymous)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Namespace;

    fn config() -> ChannelConfig {
        ChannelConfig {
            namespaces: vec![Namespace {
                name: "chat".into(),
                options: ChannelOptions {
                    presence: true,
                    ..Default::default()
                },
            }],
            ..Default::default()
        }
    }

    #[test]
    fn resolves_namespaces() {
        let c = config();
        assert!(resolve(&c, "chat:room").is_ok_and(|o| o.presence));
        assert!(resolve(&c, "$chat:room").is_ok_and(|o| o.presence));
        assert!(resolve(&c, "plain").is_ok_and(|o| !o.presence));
        assert_eq!(resolve(&c, "nope:room").err().map(|e| e.code), Some(102));
        assert_eq!(resolve(&c, "").err().map(|e| e.code), Some(107));
        assert_eq!(
            resolve(&c, &"a".repeat(256)).err().map(|e| e.code),
            Some(107)
        );
        assert!(resolve(&c, &"a".repeat(255)).is_ok());
    }

    #[test]
    fn user_limited_channels() {
        let c = config();
        assert_eq!(user_allowed(&c, "dialog#42,43", "42"), Some(true));
        assert_eq!(user_allowed(&c, "dialog#42,43", "44"), Some(false));
        assert_eq!(user_allowed(&c, "dialog#42,43", ""), Some(false));
        assert_eq!(user_allowed(&c, "dialog", "42"), None);
    }

    #[test]
    fn permissions() {
        let o = ChannelOptions {
            allow_publish_for_subscriber: true,
            ..Default::default()
        };
        let a = Asker {
            anonymous: false,
            subscribed: false,
            insecure: false,
        };
        assert!(!can_publish(&o, a));
        assert!(can_publish(
            &o,
            Asker {
                subscribed: true,
                ..a
            }
        ));
        assert!(can_publish(
            &o,
            Asker {
                insecure: true,
                ..a
            }
        ));
        assert!(!can_subscribe(&o, a));
    }
}
