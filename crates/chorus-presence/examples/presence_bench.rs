//! Benchmark of the presence service process: memory per entry and delta throughput.
//!
//! ```sh
//! cargo build --release -p chorus -p chorus-presence --example presence_bench
//! taskset -c 1 target/release/examples/presence_bench --bin target/release/chorus \
//!     --server-cpu 0 --entries 100000 --deltas 2000000
//! ```
//!
//! It starts `chorus presence` (pinned to `--server-cpu` with `taskset`), then:
//! 1. memory: 4 gateway streams add `--entries` entries (a uuid client id, an 11-char user,
//!    a 17-char channel of 100 members, a 42-byte conn_info; one connection per user, the
//!    worst case for per-user state) as `Deltas` of 1,000; RSS of the service before and after
//!    (VmRSS, after the last Ack) gives bytes per entry;
//! 2. throughput: the same streams send `--deltas` more operations (a remove of an existing
//!    entry and an add of a new one, so the state stays at `--entries`) in batches of 1,000,
//!    8 batches in flight per stream; deltas/s = operations / time to the last Ack, and the
//!    service's CPU time (utime + stime) gives deltas per CPU-second.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chorus_presence::auth::ApiKeyHeader;
use chorus_proto::presence as pb;
use chorus_proto::presence::node_message::Kind as Out;
use chorus_proto::presence::presence_client::PresenceClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const KEY: &str = "bench-key";
const BATCH: usize = 1000;
const STREAMS: usize = 4;
const IN_FLIGHT: u64 = 8;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}

/// utime + stime of the process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

fn entry(n: usize) -> pb::Entry {
    pb::Entry {
        channel: format!("chat:room-{:07}", n / 100),
        info: Some(pb::ClientInfo {
            user: format!("user-{n:06}"),
            client: uuid::Uuid::new_v4().to_string(),
            conn_info: bytes::Bytes::from(format!(
                "{{\"name\":\"User {n:06}\",\"avatar\":\"a/{:03}.png\"}}",
                n % 1000
            )),
            chan_info: bytes::Bytes::new(),
            node: String::new(),
        }),
    }
}

struct Stream {
    tx: mpsc::Sender<pb::NodeMessage>,
    rx: tonic::Streaming<pb::ServiceMessage>,
    seq: u64,
    acked: u64,
}

impl Stream {
    async fn open(url: &str, node: &str) -> Stream {
        let channel = tonic::transport::Endpoint::from_shared(url.to_string())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = PresenceClient::with_interceptor(channel, ApiKeyHeader::new(KEY));
        let (tx, rx) = mpsc::channel(64);
        let hello = Out::Hello(pb::Hello {
            node: node.into(),
            session: "bench".into(),
        });
        tx.send(pb::NodeMessage { kind: Some(hello) })
            .await
            .unwrap();
        let mut inbound = client
            .sync(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        inbound.message().await.unwrap().unwrap(); // Welcome
        let mut s = Stream {
            tx,
            rx: inbound,
            seq: 0,
            acked: 0,
        };
        s.seq = 1;
        let snap = Out::Snapshot(pb::SnapshotChunk {
            entries: vec![],
            last: true,
            seq: 1,
        });
        s.tx.send(pb::NodeMessage { kind: Some(snap) })
            .await
            .unwrap();
        s.wait(1).await;
        s
    }

    async fn wait(&mut self, seq: u64) {
        while self.acked < seq {
            match self.rx.message().await.unwrap().unwrap().kind {
                Some(pb::service_message::Kind::Ack(a)) => self.acked = a.seq,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    async fn send(&mut self, deltas: Vec<pb::Delta>) {
        self.seq += 1;
        let msg = Out::Deltas(pb::Deltas {
            seq: self.seq,
            deltas,
        });
        self.tx
            .send(pb::NodeMessage { kind: Some(msg) })
            .await
            .unwrap();
        if self.seq > IN_FLIGHT {
            self.wait(self.seq - IN_FLIGHT).await;
        }
    }
}

fn add(e: pb::Entry) -> pb::Delta {
    pb::Delta {
        op: Some(pb::delta::Op::Add(e)),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let bin = arg("--bin", "target/release/chorus");
    let cpu = arg("--server-cpu", "0");
    let entries: usize = arg("--entries", "100000").parse().unwrap();
    let total_deltas: usize = arg("--deltas", "2000000").parse().unwrap();

    let mut child = Command::new("taskset")
        .args([
            "-c",
            &cpu,
            &bin,
            "presence",
            "-p",
            "0",
            "--metrics-port",
            "0",
        ])
        .args([
            "--address",
            "127.0.0.1",
            "--set",
            "presence_server.lease_ttl=60s",
        ])
        .env("CHORUS_PRESENCE_SERVER_KEY", KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let url = line.split_whitespace().nth(4).unwrap().to_string();
    let pid = child.id();

    let mut streams = Vec::new();
    for i in 0..STREAMS {
        streams.push(Stream::open(&url, &format!("bench-gw-{i}")).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid);

    // 1. Memory at `entries` entries.
    let mut live: Vec<Vec<pb::Entry>> = vec![Vec::new(); STREAMS];
    let mut n = 0;
    while n < entries {
        let s = (n / BATCH) % STREAMS;
        let batch: Vec<pb::Entry> = (n..(n + BATCH).min(entries)).map(entry).collect();
        n += batch.len();
        live[s].extend(batch.iter().cloned());
        streams[s].send(batch.into_iter().map(add).collect()).await;
    }
    for s in &mut streams {
        let seq = s.seq;
        s.wait(seq).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid);
    let per_entry = (after - before) as f64 * 1024.0 / entries as f64;
    println!(
        "memory: {entries} entries: RSS {before} KiB -> {after} KiB = {per_entry:.0} bytes per entry"
    );

    // 2. Throughput: remove + add pairs, state stays at `entries`.
    let mut next = entries;
    let mut batches: Vec<(usize, Vec<pb::Delta>)> = Vec::new();
    let mut made = 0;
    let mut cursor = [0usize; STREAMS];
    while made < total_deltas {
        let s = batches.len() % STREAMS;
        let mut ops = Vec::with_capacity(BATCH);
        while ops.len() < BATCH {
            let idx = cursor[s] % live[s].len();
            cursor[s] += 1;
            let old = std::mem::replace(&mut live[s][idx], entry(next));
            next += 1;
            let info = old.info.unwrap();
            ops.push(pb::Delta {
                op: Some(pb::delta::Op::Remove(pb::Removal {
                    channel: old.channel,
                    client: info.client,
                })),
            });
            ops.push(add(live[s][idx].clone()));
        }
        made += ops.len();
        batches.push((s, ops));
    }
    let cpu0 = cpu_secs(pid);
    let t0 = Instant::now();
    for (s, ops) in batches {
        streams[s].send(ops).await;
    }
    for s in &mut streams {
        let seq = s.seq;
        s.wait(seq).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs(pid) - cpu0;
    println!(
        "throughput: {made} deltas in {secs:.2} s = {:.0} deltas/s; service CPU {cpu:.2} s = {:.0} deltas per CPU-second",
        made as f64 / secs,
        made as f64 / cpu
    );
    println!("final RSS {} KiB", rss_kib(pid));
    let _ = child.kill();
    let _ = child.wait();
}
