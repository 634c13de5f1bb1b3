//! The Lua scripts. Each runs atomically in Redis and touches keys of one hash slot (cluster
//! mode hash-tags them by partition).
//!
//! Publish with history (`KEYS = meta, stream, result`; `ARGV = pubsub channel, envelope,
//! history size, stream ttl ms, meta ttl ms, epoch-if-new, use-result (0/1), publish command`):
//! 1. with an idempotency key: if the result hash exists, return its `{offset, epoch}`;
//! 2. read the epoch from the meta hash (`e`); when missing, store the epoch generated in Rust
//!    (Lua has no good randomness) and delete a leftover stream of the old epoch;
//! 3. `HINCRBY meta s 1` → the new offset; `PEXPIRE meta`;
//! 4. `XADD stream MAXLEN = size <offset>-0 d <envelope>`; `PEXPIRE stream`;
//! 5. `PUBLISH`/`SPUBLISH` the frame `c1:<offset>:<epoch>:<envelope>`;
//! 6. with an idempotency key: store `{e, s}` in the result hash for 300 s;
//! 7. return `{offset, epoch}`.
//!
//! History read (`KEYS = meta, stream`; `ARGV = epoch-if-new, meta ttl ms, read (0/1), reverse
//! (0/1), from id, to id, count or ""`): creates the meta (new epoch) if missing, then returns
//! `{top, epoch, entries}` with entries from XRANGE / XREVRANGE.

use std::sync::LazyLock;

use chorus_core::broker::{BrokerError, HistoryQuery};
use chorus_protocol::Publication;
use redis::{Script, Value};

use crate::envelope::{self, Delivery};

pub static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if ARGV[7] == '1' then
  local r = redis.call('hmget', KEYS[3], 's', 'e')
  if r[1] and r[2] then
    return {r[1], r[2]}
  end
end
local epoch = redis.call('hget', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[6]
  redis.call('hset', KEYS[1], 'e', epoch)
  redis.call('del', KEYS[2])
end
local top = redis.call('hincrby', KEYS[1], 's', 1)
redis.call('pexpire', KEYS[1], ARGV[5])
redis.call('xadd', KEYS[2], 'MAXLEN', '=', ARGV[3], top .. '-0', 'd', ARGV[2])
redis.call('pexpire', KEYS[2], ARGV[4])
redis.call(ARGV[8], ARGV[1], 'c1:' .. top .. ':' .. epoch .. ':' .. ARGV[2])
if ARGV[7] == '1' then
  redis.call('hset', KEYS[3], 's', top, 'e', epoch)
  redis.call('expire', KEYS[3], 300)
end
return {tostring(top), epoch}
"#,
    )
});

pub static HISTORY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local epoch = redis.call('hget', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('hset', KEYS[1], 'e', epoch)
  redis.call('pexpire', KEYS[1], ARGV[2])
  redis.call('del', KEYS[2])
end
local top = redis.call('hget', KEYS[1], 's') or '0'
local entries = {}
if ARGV[3] == '1' then
  local cmd = 'xrange'
  if ARGV[4] == '1' then cmd = 'xrevrange' end
  if ARGV[7] ~= '' then
    entries = redis.call(cmd, KEYS[2], ARGV[5], ARGV[6], 'COUNT', ARGV[7])
  else
    entries = redis.call(cmd, KEYS[2], ARGV[5], ARGV[6])
  end
end
return {top, epoch, entries}
"#,
    )
});

/// `(read, from, to, count)` arguments of [`HISTORY`] for a query: forward reads start after
/// `since` (ids are `<offset>-0`), reverse reads start before it; limit 0 reads meta only.
pub fn history_range(query: &HistoryQuery) -> (bool, String, String, String) {
    let mut read = query.limit != Some(0);
    let (from, to) = if query.reverse {
        match &query.since {
            Some(s) if s.offset == 0 => {
                read = false;
                ("+".to_string(), "-".to_string())
            }
            Some(s) => (format!("{}-0", s.offset - 1), "-".to_string()),
            None => ("+".to_string(), "-".to_string()),
        }
    } else {
        match &query.since {
            Some(s) => (format!("{}-0", s.offset.saturating_add(1)), "+".to_string()),
            None => ("-".to_string(), "+".to_string()),
        }
    };
    let count = query.limit.map(|n| n.to_string()).unwrap_or_default();
    (read, from, to, count)
}

fn bulk(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Parses `{top, epoch, entries}` of the history script.
pub fn parse_history(v: Value) -> Result<(u64, String, Vec<Publication>), BrokerError> {
    let bad = || BrokerError::Other("unexpected history reply".into());
    let Value::Array(parts) = v else {
        return Err(bad());
    };
    let [top, epoch, entries] = <[Value; 3]>::try_from(parts).map_err(|_| bad())?;
    let top: u64 = bulk(&top).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let epoch = bulk(&epoch).ok_or_else(bad)?;
    let entries = match entries {
        Value::Array(e) => e,
        Value::Nil => Vec::new(),
        _ => return Err(bad()),
    };
    let mut pubs = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(pair) = entry else {
            return Err(bad());
        };
        let mut it = pair.into_iter();
        let (Some(id), Some(Value::Array(fields))) = (it.next(), it.next()) else {
            return Err(bad());
        };
        let offset: u64 = bulk(&id)
            .and_then(|s| s.split('-').next().and_then(|o| o.parse().ok()))
            .ok_or_else(bad)?;
        let Some(Value::BulkString(data)) = fields.get(1) else {
            return Err(bad());
        };
        match envelope::decode(data, offset, "") {
            // History never carries the live "delta-compressible" mark.
            Ok(Delivery::Publication { publication, .. }) => pubs.push(Publication {
                delta: false,
                ..publication
            }),
            _ => {
                metrics::counter!(crate::metrics::BAD_ENVELOPES).increment(1);
            }
        }
    }
    Ok((top, epoch, pubs))
}
