//! Redis addresses: what one entry of `addresses` means.
//!
//! | form | meaning |
//! |---|---|
//! | `host:port` | plain TCP (TLS when [`RedisTls::enabled`]) |
//! | `redis://[user[:password]@]host:port[/db]` | plain TCP (TLS when [`RedisTls::enabled`]) |
//! | `rediss://[user[:password]@]host:port[/db]` | TLS, verified with [`RedisTls`]'s CA (or the system roots) |
//! | `redis+sentinel://[user[:password]@]s1:26379[,s2:26379…]/<master>[/db][?query]` | the current master of `<master>` as Sentinel reports it; TLS to the master when [`RedisTls::enabled`] |
//!
//! In a Sentinel address the userinfo is the **master's** credentials (like a `redis://`
//! address); the Sentinels' own are query parameters: `sentinel_user`, `sentinel_password`,
//! and `sentinel_tls=true` to reach the Sentinels over TLS (same CA and client certificate).
//! The master name may also be given as `?sentinel_master_name=`. Every userinfo part and
//! query value is percent-decoded.

use crate::config::RedisTls;

/// One parsed address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A Redis node (or a Cluster seed): its URL, `redis://` or `rediss://`, RESP3 selected.
    Direct(String),
    /// A master found through Sentinel.
    Sentinel(SentinelAddress),
}

/// A `redis+sentinel://` address.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelAddress {
    /// The Sentinels, `(host, port)`, asked in order.
    pub sentinels: Vec<(String, u16)>,
    /// The master's name in the Sentinels' configuration.
    pub master: String,
    /// Database number on the master. Default 0.
    pub db: i64,
    /// The master's ACL user and password (empty: none).
    pub user: String,
    pub password: String,
    /// The Sentinels' ACL user and password (empty: none).
    pub sentinel_user: String,
    pub sentinel_password: String,
    /// Reach the Sentinels over TLS.
    pub sentinel_tls: bool,
}

impl std::fmt::Debug for SentinelAddress {
    /// Without passwords.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelAddress")
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .field("db", &self.db)
            .field("user", &self.user)
            .field("sentinel_user", &self.sentinel_user)
            .field("sentinel_tls", &self.sentinel_tls)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for SentinelAddress {
    /// `sentinel <master> via h1:26379,h2:26379`, for logs (no credentials).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|(h, p)| format!("{h}:{p}"))
            .collect();
        write!(f, "sentinel {} via {}", self.master, hosts.join(","))
    }
}

/// Parses one address. `tls` decides whether plain addresses use TLS. Errors are complete
/// sentences naming the address without its credentials.
pub fn parse(address: &str, tls: &RedisTls) -> Result<Address, String> {
    let address = address.trim();
    if address.is_empty() {
        return Err("empty Redis address".into());
    }
    let (scheme, rest) = match address.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("redis".to_string(), address),
    };
    match scheme.as_str() {
        "redis" | "rediss" => {
            let secure = scheme == "rediss" || tls.enabled;
            let (hosts, _) = split_authority(rest);
            let (_, hostport) = split_userinfo(hosts);
            host_port(hostport, 6379)
                .map_err(|e| format!("Redis address {}: {e}", redact(address)))?;
            Ok(Address::Direct(direct_url(
                rest,
                secure,
                tls.insecure_skip_verify,
            )))
        }
        "redis+sentinel" | "rediss+sentinel" => parse_sentinel(rest, scheme == "rediss+sentinel")
            .map(Address::Sentinel)
            .map_err(|e| format!("Sentinel address {}: {e}", redact(address))),
        other => Err(format!(
            "Redis address {}: unsupported scheme {other}:// (use redis://, rediss:// or \
             redis+sentinel://)",
            redact(address)
        )),
    }
}

/// The address with any password replaced by `***`, for messages.
pub fn redact(address: &str) -> String {
    let Some((scheme, rest)) = address.split_once("://") else {
        return address.to_string();
    };
    let (authority, tail) = split_authority(rest);
    let (userinfo, hosts) = split_userinfo(authority);
    let mut out = format!("{scheme}://");
    if let Some(ui) = userinfo {
        match ui.split_once(':') {
            Some((user, _)) => out.push_str(&format!("{user}:***@")),
            None => out.push_str(&format!("{ui}@")),
        }
    }
    out.push_str(hosts);
    // Query values may carry sentinel_password.
    match tail.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            let q: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.contains("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            out.push('?');
            out.push_str(&q.join("&"));
        }
        None => out.push_str(tail),
    }
    out
}

/// `redis://` or `rediss://` + `rest`, with `protocol=resp3` (pushes carry pub/sub) and the
/// `#insecure` fragment when verification is off.
fn direct_url(rest: &str, secure: bool, insecure: bool) -> String {
    let scheme = if secure { "rediss" } else { "redis" };
    let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
    let mut url = format!("{scheme}://{rest}");
    if !url.contains("protocol=") {
        if url.contains('?') {
            url.push_str("&protocol=resp3");
        } else if split_authority(rest).1.is_empty() {
            url.push_str("/?protocol=resp3");
        } else {
            url.push_str("?protocol=resp3");
        }
    }
    if secure && insecure {
        url.push_str("#insecure");
    }
    url
}

fn parse_sentinel(rest: &str, sentinel_tls_scheme: bool) -> Result<SentinelAddress, String> {
    let (authority, tail) = split_authority(rest);
    let (userinfo, hosts) = split_userinfo(authority);
    let (user, password) = match userinfo {
        Some(ui) => match ui.split_once(':') {
            Some((u, p)) => (decode(u)?, decode(p)?),
            None => (decode(ui)?, String::new()),
        },
        None => (String::new(), String::new()),
    };
    let mut sentinels = Vec::new();
    for h in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        sentinels.push(host_port(h, 26379)?);
    }
    if sentinels.is_empty() {
        return Err("names no Sentinel host".into());
    }
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    let mut master = segments.next().map(decode).transpose()?.unwrap_or_default();
    let mut db = match segments.next() {
        Some(d) => d
            .parse::<i64>()
            .map_err(|_| format!("database {d:?} is not a number"))?,
        None => 0,
    };
    if segments.next().is_some() {
        return Err("too many path segments (expected /<master>[/<db>])".into());
    }
    let mut addr = SentinelAddress {
        sentinels,
        master: String::new(),
        db: 0,
        user,
        password,
        sentinel_user: String::new(),
        sentinel_password: String::new(),
        sentinel_tls: sentinel_tls_scheme,
    };
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let v = decode(v)?;
        match k {
            "sentinel_master_name" | "master_name" => master = v,
            "sentinel_user" | "sentinel_username" => addr.sentinel_user = v,
            "sentinel_password" => addr.sentinel_password = v,
            "sentinel_tls" => addr.sentinel_tls = parse_bool(&v)?,
            "db" => db = v.parse().map_err(|_| format!("db {v:?} is not a number"))?,
            "protocol" => {}
            other => return Err(format!("unknown query parameter {other:?}")),
        }
    }
    if master.is_empty() {
        return Err("names no master (redis+sentinel://host:26379/<master>)".into());
    }
    addr.master = master;
    addr.db = db;
    Ok(addr)
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" | "" => Ok(false),
        _ => Err(format!("{v:?} is not a boolean")),
    }
}

/// `authority` and the rest (path, query) of what follows `scheme://`.
fn split_authority(rest: &str) -> (&str, &str) {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    rest.split_at(end)
}

/// `(userinfo, hosts)` of an authority; the userinfo ends at its last `@`.
fn split_userinfo(authority: &str) -> (Option<&str>, &str) {
    match authority.rsplit_once('@') {
        Some((ui, hosts)) => (Some(ui), hosts),
        None => (None, authority),
    }
}

/// `host[:port]` with an IPv6 literal in brackets allowed.
fn host_port(s: &str, default_port: u16) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{s:?}: unclosed '['"))?;
        (h, after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{s:?} names no host"));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| format!("{s:?}: port {p:?} is not a port number"))?,
        None => default_port,
    };
    Ok((host.to_string(), port))
}

/// Percent-decoding of one URL component (UTF-8).
fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "a bad percent-escape".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a percent-escape that is not UTF-8".into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
