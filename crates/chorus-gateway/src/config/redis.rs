//! `engine.redis.*`: where the Redis engine connects — addresses, credentials, TLS, Sentinel —
//! its checks, and its mapping onto the broker's [`RedisConfig`].
//!
//! Three ways to name Redis (see `chorus_redis::address` for the URL forms):
//! * `address`: `host:port`, `redis://…`, `rediss://…` (TLS) or `redis+sentinel://…`; a list
//!   is a list of shards (or of Cluster seeds with `cluster: true`);
//! * `sentinel_address` + `sentinel_master_name` (+ `sentinel_user`, `sentinel_password`,
//!   `sentinel_tls`): one shard, the master the Sentinels name; replaces `address`;
//! * `tls.enabled` turns every plain address into TLS; `tls.*` also holds the CA and client
//!   certificate files used by `rediss://` addresses.

use serde::{Deserialize, Serialize};

use chorus_core::duration::ConfigDuration;
use chorus_redis::address::{self, Address};
use chorus_redis::config::RedisTls;
use chorus_redis::RedisConfig;

use super::one_or_many;

/// `engine.redis.*`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisEngineConfig {
    /// One address (`"host:port"`, `"redis://…"`, `"rediss://…"` or
    /// `"redis+sentinel://…"`) or a list. Standalone: every address is an independent shard,
    /// channels are spread by jump hash of their name (keep the list the same, in the same
    /// order, on every node). Cluster: seed nodes. Default `["127.0.0.1:6379"]`. Env:
    /// `CHORUS_ENGINE_REDIS_ADDRESS=a:6379,b:6379`.
    #[serde(deserialize_with = "one_or_many")]
    pub address: Vec<String>,
    /// Redis Cluster mode (sharded pub/sub). Explicit, never auto-detected. Default false.
    pub cluster: bool,
    /// Prefix of every Redis key and channel. Default `"chorus"`.
    pub prefix: String,
    /// Cluster mode: partitions channels are hashed into (one sharded subscription per
    /// partition at most). Default 64; at least 1. Same on every node.
    pub partitions: u32,
    /// Connect plus handshake deadline. Default 1s.
    pub connect_timeout: ConfigDuration,
    /// Deadline of one Redis command; past it the call fails with error 100. Default 1s.
    pub command_timeout: ConfigDuration,
    /// How often each subscriber connection probes itself. Default 5s.
    pub liveness_probe_interval: ConfigDuration,
    /// A probe not back within this time marks the subscriber connection dead. Default 3s.
    pub liveness_probe_timeout: ConfigDuration,
    /// ACL user to authenticate as (Redis 6+). Default empty: the `default` user, or the user
    /// in an address's URL (`redis://user:password@host:6379`), which wins.
    pub user: String,
    /// Password (`requirepass`, or the ACL user's). Default empty: none, or the one in an
    /// address's URL, which wins. Pass it as `CHORUS_ENGINE_REDIS_PASSWORD` or from a secret
    /// file rather than in the config file. Never logged.
    pub password: String,
    /// `engine.redis.tls.*`: TLS to Redis.
    pub tls: RedisTlsConfig,
    /// Sentinels to ask for the master (`host:port`, default port 26379), one string split on
    /// commas or a list. When set, the engine has one shard, the master named
    /// `sentinel_master_name`, and `address` is not used. Default empty.
    #[serde(deserialize_with = "one_or_many")]
    pub sentinel_address: Vec<String>,
    /// The master's name in the Sentinels' configuration (`sentinel monitor <name> …`).
    /// Required with `sentinel_address`.
    pub sentinel_master_name: String,
    /// ACL user on the Sentinels. Default empty.
    pub sentinel_user: String,
    /// Password of the Sentinels (`requirepass` in sentinel.conf). Default empty. Never logged.
    pub sentinel_password: String,
    /// `engine.redis.sentinel_tls.*`: TLS to the Sentinels.
    pub sentinel_tls: SentinelTlsConfig,
}

impl Default for RedisEngineConfig {
    fn default() -> Self {
        RedisEngineConfig {
            address: vec!["127.0.0.1:6379".into()],
            cluster: false,
            prefix: "chorus".into(),
            partitions: 64,
            connect_timeout: ConfigDuration::from_secs(1),
            command_timeout: ConfigDuration::from_secs(1),
            liveness_probe_interval: ConfigDuration::from_secs(5),
            liveness_probe_timeout: ConfigDuration::from_secs(3),
            user: String::new(),
            password: String::new(),
            tls: RedisTlsConfig::default(),
            sentinel_address: Vec::new(),
            sentinel_master_name: String::new(),
            sentinel_user: String::new(),
            sentinel_password: String::new(),
            sentinel_tls: SentinelTlsConfig::default(),
        }
    }
}

/// `engine.redis.tls.*`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RedisTlsConfig {
    /// TLS to every address, as if each were written `rediss://` (and to the master found
    /// through Sentinel). Default false; a `rediss://` address uses TLS regardless.
    pub enabled: bool,
    /// PEM file of the CA(s) that verify Redis's certificate. Default empty: the system's
    /// roots. The certificate must name the host as written in the address.
    pub server_ca_pem_file: String,
    /// PEM client certificate chain for mutual TLS (`tls-auth-clients yes`). Set together
    /// with `key_pem_file`. Default empty: no client certificate.
    pub cert_pem_file: String,
    /// PEM private key of `cert_pem_file`.
    pub key_pem_file: String,
    /// Accept any server certificate. For tests only: it allows a man in the middle;
    /// `checkconfig` warns (an error with `--strict`). Default false.
    pub insecure_skip_verify: bool,
}

/// `engine.redis.sentinel_tls.*`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct SentinelTlsConfig {
    /// Reach the Sentinels over TLS, verified with `engine.redis.tls.server_ca_pem_file` and
    /// presenting its client certificate. Default false.
    pub enabled: bool,
}

impl RedisEngineConfig {
    /// Problems of `engine.redis.*`, each naming its key. Files are read and addresses parsed
    /// here, so `checkconfig` refuses what `serve` would.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let tls = match self.load_tls() {
            Ok(t) => t,
            Err(e) => {
                p.push(e);
                RedisTls::default()
            }
        };
        if self.sentinel_address.is_empty() {
            if self.address.iter().all(|a| a.trim().is_empty()) {
                p.push("engine.redis.address must name at least one address".into());
            }
            if self.address.iter().any(|a| a.trim().is_empty()) && self.address.len() > 1 {
                p.push("engine.redis.address must not contain empty entries".into());
            }
        } else if self.sentinel_master_name.trim().is_empty() {
            p.push("engine.redis.sentinel_master_name must be set with sentinel_address".into());
        } else if self.cluster {
            p.push("engine.redis.sentinel_address cannot be used with cluster: true".into());
        }
        for a in self.broker_addresses() {
            match address::parse(&a, &tls) {
                Ok(Address::Sentinel(_)) if self.cluster => p.push(format!(
                    "engine.redis.address {}: cluster mode takes the cluster's node addresses, \
                     not redis+sentinel://",
                    address::redact(&a)
                )),
                Ok(_) => {}
                Err(e) => p.push(format!("engine.redis: {e}")),
            }
        }
        if self.partitions == 0 {
            p.push("engine.redis.partitions must be at least 1".into());
        }
        for (key, d) in [
            ("connect_timeout", self.connect_timeout),
            ("command_timeout", self.command_timeout),
            ("liveness_probe_interval", self.liveness_probe_interval),
            ("liveness_probe_timeout", self.liveness_probe_timeout),
        ] {
            if d.is_zero() {
                p.push(format!("engine.redis.{key} must be greater than 0"));
            }
        }
        p
    }

    /// Warnings of the safer-config check (`--strict` makes them errors).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.tls.insecure_skip_verify {
            w.push(
                "engine.redis.tls.insecure_skip_verify is true: Redis's certificate is not \
                 verified, so anyone on the path can read and change the backplane's traffic"
                    .into(),
            );
        }
        w
    }

    /// The broker's config: addresses with credentials, TLS material read from its files.
    pub fn broker_config(&self) -> Result<RedisConfig, String> {
        Ok(RedisConfig {
            addresses: self.broker_addresses(),
            cluster: self.cluster,
            prefix: self.prefix.clone(),
            partitions: self.partitions,
            connect_timeout: self.connect_timeout.get(),
            command_timeout: self.command_timeout.get(),
            liveness_probe_interval: self.liveness_probe_interval.get(),
            liveness_probe_timeout: self.liveness_probe_timeout.get(),
            tls: self.load_tls()?,
            ..RedisConfig::default()
        })
    }

    /// The addresses the broker dials: `sentinel_*` as one `redis+sentinel://` URL, or
    /// `address`; `user`/`password` go into each URL that names none.
    fn broker_addresses(&self) -> Vec<String> {
        if !self.sentinel_address.is_empty() {
            let hosts: Vec<&str> = self.sentinel_address.iter().map(|h| h.trim()).collect();
            let mut query = vec![format!(
                "sentinel_master_name={}",
                percent_encode(&self.sentinel_master_name)
            )];
            if !self.sentinel_user.is_empty() {
                query.push(format!(
                    "sentinel_user={}",
                    percent_encode(&self.sentinel_user)
                ));
            }
            if !self.sentinel_password.is_empty() {
                query.push(format!(
                    "sentinel_password={}",
                    percent_encode(&self.sentinel_password)
                ));
            }
            if self.sentinel_tls.enabled {
                query.push("sentinel_tls=true".into());
            }
            let url = format!("redis+sentinel://{}/?{}", hosts.join(","), query.join("&"));
            return vec![with_credentials(&url, &self.user, &self.password)];
        }
        self.address
            .iter()
            .map(|a| with_credentials(a.trim(), &self.user, &self.password))
            .collect()
    }

    /// `tls.*` with its files read.
    fn load_tls(&self) -> Result<RedisTls, String> {
        let t = &self.tls;
        let read = |key: &str, path: &str| -> Result<Option<Vec<u8>>, String> {
            if path.trim().is_empty() {
                return Ok(None);
            }
            let bytes =
                std::fs::read(path).map_err(|e| format!("engine.redis.tls.{key} {path:?}: {e}"))?;
            if !String::from_utf8_lossy(&bytes).contains("-----BEGIN ") {
                return Err(format!(
                    "engine.redis.tls.{key} {path:?} holds no PEM block"
                ));
            }
            Ok(Some(bytes))
        };
        let ca_pem = read("server_ca_pem_file", &t.server_ca_pem_file)?;
        let client_cert_pem = read("cert_pem_file", &t.cert_pem_file)?;
        let client_key_pem = read("key_pem_file", &t.key_pem_file)?;
        if client_cert_pem.is_some() != client_key_pem.is_some() {
            return Err(
                "engine.redis.tls.cert_pem_file and key_pem_file must be set together".into(),
            );
        }
        Ok(RedisTls {
            enabled: t.enabled,
            ca_pem,
            client_cert_pem,
            client_key_pem,
            insecure_skip_verify: t.insecure_skip_verify,
        })
    }
}

/// `address` as a URL carrying `user`/`password` (percent-encoded), unless it already names
/// credentials or none are configured.
pub(crate) fn with_credentials(address: &str, user: &str, password: &str) -> String {
    if user.is_empty() && password.is_empty() {
        return address.to_string();
    }
    let (scheme, rest) = address.split_once("://").unwrap_or(("redis", address));
    let host_end = rest.find(['/', '?']).unwrap_or(rest.len());
    if rest[..host_end].contains('@') {
        return address.to_string();
    }
    let user = percent_encode(user);
    let password = percent_encode(password);
    let auth = if password.is_empty() {
        format!("{user}@")
    } else {
        format!("{user}:{password}@")
    };
    format!("{scheme}://{auth}{rest}")
}

/// URL component encoding: unreserved characters as they are, every other byte as `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn credentials_go_into_the_url() {
        assert_eq!(with_credentials("r:6379", "", ""), "r:6379");
        assert_eq!(
            with_credentials("r:6379", "", "p@ss w/rd"),
            "redis://:p%40ss%20w%2Frd@r:6379"
        );
        assert_eq!(
            with_credentials("redis://r:6379/0", "alice", "pw"),
            "redis://alice:pw@r:6379/0"
        );
        assert_eq!(
            with_credentials("r:6379", "alice", ""),
            "redis://alice@r:6379"
        );
        // An address with its own credentials keeps them.
        assert_eq!(
            with_credentials("redis://bob:x@r:6379", "alice", "pw"),
            "redis://bob:x@r:6379"
        );
    }

    #[test]
    fn address_strings_split_on_commas_but_keep_sentinel_host_lists() {
        use crate::config::split_addresses;
        assert_eq!(split_addresses("a:1, b:2,,"), vec!["a:1", "b:2"]);
        assert_eq!(
            split_addresses("redis+sentinel://:p@s1:1,s2:2/m?sentinel_tls=true,r:6379"),
            vec![
                "redis+sentinel://:p@s1:1,s2:2/m?sentinel_tls=true",
                "r:6379"
            ]
        );
        assert_eq!(
            split_addresses("redis+sentinel://s1,s2/m1, redis+sentinel://s3,s4/m2"),
            vec!["redis+sentinel://s1,s2/m1", "redis+sentinel://s3,s4/m2"]
        );
    }

    #[test]
    fn sentinel_keys_become_one_sentinel_url() {
        let c = RedisEngineConfig {
            sentinel_address: vec!["s1:26379".into(), " s2:26380".into()],
            sentinel_master_name: "my master".into(),
            sentinel_password: "s&p".into(),
            sentinel_tls: SentinelTlsConfig { enabled: true },
            password: "m:p".into(),
            ..RedisEngineConfig::default()
        };
        assert_eq!(
            c.broker_addresses(),
            vec![
                "redis+sentinel://:m%3Ap@s1:26379,s2:26380/?sentinel_master_name=my%20master&sentinel_password=s%26p&sentinel_tls=true"
                    .to_string()
            ]
        );
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        let Address::Sentinel(s) =
            address::parse(&c.broker_addresses()[0], &RedisTls::default()).unwrap()
        else {
            panic!("not a sentinel address")
        };
        assert_eq!(s.master, "my master");
        assert_eq!(s.password, "m:p");
        assert_eq!(s.sentinel_password, "s&p");
        assert!(s.sentinel_tls);
    }
}
