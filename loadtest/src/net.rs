//! Where connections go and come from: `ws://` targets, source-address lists, and the
//! ephemeral-port arithmetic that decides whether a run can open that many sockets at all.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::error::LoadError;

/// A parsed `ws://host:port/path` URL with its resolved (IPv4) address.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub authority: String,
    pub path: String,
}

/// Splits `scheme://authority/path` and resolves the authority (port 80 when absent).
pub async fn resolve(url: &str, scheme: &str) -> Result<Target, LoadError> {
    let bad = |reason: &str| LoadError::Target {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let rest = url
        .strip_prefix(scheme)
        .and_then(|r| r.strip_prefix("://"))
        .ok_or_else(|| bad(&format!("only {scheme}:// URLs are supported")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    let hostport = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = tokio::net::lookup_host(&hostport)
        .await
        .map_err(|e| bad(&e.to_string()))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| bad("no IPv4 address"))?;
    Ok(Target {
        addr,
        authority: authority.to_string(),
        path: path.to_string(),
    })
}

/// Parses `127.0.0.11-127.0.0.40,127.0.1.5` (IPv4 ranges and single addresses) or `none`
/// (the empty list: the kernel picks the source address).
pub fn parse_source_ips(s: &str) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    if s.trim().is_empty() || s.trim() == "none" {
        return Ok(out);
    }
    for part in s.split(',') {
        let part = part.trim();
        if let Some((a, b)) = part.split_once('-') {
            let ip = |t: &str| {
                t.trim()
                    .parse::<Ipv4Addr>()
                    .map(u32::from)
                    .map_err(|_| format!("bad source address {t:?}"))
            };
            let (a, b) = (ip(a)?, ip(b)?);
            if b < a || b - a > 65_536 {
                return Err(format!("bad source range {part:?}"));
            }
            out.extend((a..=b).map(|v| IpAddr::V4(Ipv4Addr::from(v))));
        } else {
            out.push(
                part.parse()
                    .map_err(|_| format!("bad source address {part:?}"))?,
            );
        }
    }
    Ok(out)
}

/// The slice of `sources` that worker `index` of `workers` binds to: every `workers`-th
/// address, so workers never share a source address while there are enough of them (with
/// fewer addresses than workers, worker i takes address i mod n).
pub fn sources_for(sources: &[IpAddr], index: usize, workers: usize) -> Vec<IpAddr> {
    if sources.is_empty() || workers <= 1 {
        return sources.to_vec();
    }
    if sources.len() < workers {
        return vec![sources[index % sources.len()]];
    }
    sources
        .iter()
        .skip(index)
        .step_by(workers)
        .copied()
        .collect()
}

/// Local ports the kernel hands out (`net.ipv4.ip_local_port_range`; 32768–60999 = 28,232
/// by default).
pub fn ephemeral_ports() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|v| v.parse::<usize>().ok());
            let (lo, hi) = (it.next()??, it.next()??);
            (hi >= lo).then(|| hi - lo + 1)
        })
        .unwrap_or(28_232)
}

/// Refuses a run that would run out of local ports: a source address bound with port 0
/// (`--source-ips`) gets at most `ports` sockets in total; without source addresses the
/// kernel picks per destination, so at most `ports` sockets go to one loopback `ip:port`
/// (for a remote target the client machine's own address is the limit, same arithmetic).
pub fn check_ports(
    targets: &[SocketAddr],
    sources: usize,
    connections: usize,
    ports: usize,
) -> Result<(), LoadError> {
    // Leave room for the API publisher, stragglers in TIME_WAIT and the rest of the machine.
    let usable = ports * 9 / 10;
    if sources > 0 {
        let per_source = connections.div_ceil(sources);
        if per_source > usable {
            return Err(LoadError::Args(format!(
                "{connections} connections over {sources} source address(es) is {per_source} per \
                 address, above the ~{usable} usable ephemeral ports of each: give more \
                 --source-ips (e.g. 127.0.0.11-127.0.0.40 for a local run)"
            )));
        }
        return Ok(());
    }
    // Connection i goes to targets[i mod n]: a destination listed twice gets twice the share.
    let share = connections.div_ceil(targets.len().max(1));
    for t in targets.iter().filter(|t| t.ip().is_loopback()) {
        let per_target = share * targets.iter().filter(|u| *u == t).count();
        if per_target > usable {
            return Err(LoadError::Args(format!(
                "{per_target} connections to {t} from one source address: a loopback target \
                 gets ~{ports} ephemeral ports per source IP (net.ipv4.ip_local_port_range). \
                 Spread the sockets with --source-ips 127.0.0.11-127.0.0.40 (30 addresses, \
                 ~840k sockets), or use more --url targets"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn source_ranges_lists_and_none() {
        let ips = parse_source_ips("127.0.0.11-127.0.0.13,127.0.1.1").expect("valid");
        let s: Vec<String> = ips.iter().map(ToString::to_string).collect();
        assert_eq!(s, ["127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.1.1"]);
        assert!(parse_source_ips("none").expect("valid").is_empty());
        assert!(parse_source_ips("").expect("valid").is_empty());
        assert!(parse_source_ips("127.0.0.9-127.0.0.1").is_err());
        assert!(parse_source_ips("127.0.0.x").is_err());
    }

    #[test]
    fn workers_get_disjoint_source_subsets() {
        let ips = parse_source_ips("127.0.0.1-127.0.0.6").expect("valid");
        let w1 = sources_for(&ips, 1, 3);
        assert_eq!(w1, [ips[1], ips[4]]);
        assert_eq!(sources_for(&ips, 0, 1), ips);
        assert_eq!(sources_for(&ips[..2], 3, 4), [ips[1]]);
        assert!(sources_for(&[], 0, 4).is_empty());
    }

    #[test]
    fn port_arithmetic_refuses_loopback_overflow_only() {
        let lo: SocketAddr = "127.0.0.1:8000".parse().unwrap();
        let remote: SocketAddr = "10.1.2.3:8000".parse().unwrap();
        assert!(check_ports(&[lo], 0, 25_000, 28_232).is_ok());
        let err = check_ports(&[lo], 0, 30_000, 28_232)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--source-ips 127.0.0.11-127.0.0.40"), "{err}");
        // Two loopback destinations halve the load of each; one listed twice does not.
        let lo2: SocketAddr = "127.0.0.1:8001".parse().unwrap();
        assert!(check_ports(&[lo, lo2], 0, 30_000, 28_232).is_ok());
        assert!(check_ports(&[lo, lo], 0, 30_000, 28_232).is_err());
        assert!(check_ports(&[remote], 0, 30_000, 28_232).is_ok());
        assert!(check_ports(&[lo], 30, 600_000, 28_232).is_ok());
        assert!(check_ports(&[lo], 2, 60_000, 28_232).is_err());
    }

    #[tokio::test]
    async fn targets_parse_and_resolve() {
        let t = resolve("ws://127.0.0.1:8123/connection/websocket", "ws")
            .await
            .expect("valid");
        assert_eq!(t.addr, "127.0.0.1:8123".parse().unwrap());
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("127.0.0.1:8123", "/connection/websocket")
        );
        let t = resolve("http://127.0.0.1", "http").await.expect("valid");
        assert_eq!((t.addr.port(), t.path.as_str()), (80, "/"));
        assert!(resolve("wss://x:1/", "ws").await.is_err());
        assert!(resolve("ws:///p", "ws").await.is_err());
    }
}
