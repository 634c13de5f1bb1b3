//! From [`Config`] to the pieces the engine runs on: [`NodeOptions`] and the token verifier.
//! (The node itself, with its broker, is assembled by [`crate::server`].)

use std::sync::Arc;

use chorus_core::auth::{NoTokens, TokenVerifier};
use chorus_core::options::NodeOptions;

use crate::auth::{AuthError, JwtVerifier};
use crate::config::Config;

/// Node name used when `node.name` is empty and the host name is unknown.
pub const FALLBACK_NODE_NAME: &str = "chorus";

/// The engine's options: node name, version, `client.*` session options, `channel.*`.
pub fn node_options(config: &Config) -> NodeOptions {
    NodeOptions {
        name: node_name(config),
        version: env!("CARGO_PKG_VERSION").to_string(),
        client: config.client.options.clone(),
        channel: config.channel.config.clone(),
        rpc: config.rpc.config.clone(),
    }
}

/// `node.name`, else the host name, else [`FALLBACK_NODE_NAME`].
pub fn node_name(config: &Config) -> String {
    let configured = config.node.name.trim();
    if !configured.is_empty() {
        return configured.to_string();
    }
    host_name().unwrap_or_else(|| FALLBACK_NODE_NAME.to_string())
}

fn host_name() -> Option<String> {
    let from_env = std::env::var("HOSTNAME").ok();
    let from_files = || {
        ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
    };
    from_env
        .or_else(from_files)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// A [`JwtVerifier`] when any token key is configured, else [`NoTokens`] (every token refused;
/// only `client.insecure` connections get in).
pub fn token_verifier(config: &Config) -> Result<Arc<dyn TokenVerifier>, AuthError> {
    if config.client.has_token_key() {
        Ok(Arc::new(JwtVerifier::from_config(&config.client)?))
    } else {
        Ok(Arc::new(NoTokens))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use chorus_core::auth::TokenError;

    #[test]
    fn node_options_carry_config() {
        let mut config = Config::embedded_default();
        config.node.name = "n1".into();
        config.client.options.channel_limit = 7;
        let o = node_options(&config);
        assert_eq!(o.name, "n1");
        assert_eq!(o.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(o.client.channel_limit, 7);
        assert_eq!(o.channel.namespaces.len(), 1);
        assert_eq!(o.channel.namespaces[0].name, "chat");
    }

    #[test]
    fn empty_node_name_is_derived() {
        let config = Config::default();
        let name = node_name(&config);
        assert!(!name.is_empty());
        assert_eq!(name, name.trim());
    }

    #[test]
    fn verifier_kind_follows_keys() {
        let config = Config::default();
        let v = token_verifier(&config).unwrap();
        assert_eq!(
            v.verify_connection("a.b.c"),
            Err(TokenError::Invalid(
                "no token verification key configured".into()
            ))
        );

        let mut config = Config::default();
        config.client.token.hmac_secret_key = "s3cret".into();
        let v = token_verifier(&config).unwrap();
        let claims = serde_json::json!({"sub": "u1"});
        let token = crate::auth::sign_hs256("s3cret", &claims).unwrap();
        assert_eq!(v.verify_connection(&token).unwrap().user, "u1");

        let mut config = Config::default();
        config.client.token.rsa_public_key = "not a pem".into();
        let err = token_verifier(&config).err().unwrap();
        assert!(
            matches!(err, AuthError::InvalidKey { ref key, .. } if key == "client.token.rsa_public_key")
        );
    }
}
