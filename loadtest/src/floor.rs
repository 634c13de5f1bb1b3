//! `floor`: what one small write costs on this machine with no chorus involved — the
//! reference the server's CPU per delivery is compared against. N loopback sockets are
//! read by a built-in sink (another thread, `sink`); one sending thread writes an F-byte
//! WebSocket text frame to each socket in turn (std `TcpStream::write`: exactly one
//! `send(2)` per call, checked with `strace -c -f`), and reads its own CPU from
//! `/proc/thread-self` before and after.

mod sink;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::FloorArgs;
use crate::error::LoadError;
use crate::procfs::{thread_cpu, ThreadCpu};
use crate::progress::Progress;
use crate::report::Report;

/// File descriptors besides the 2 per connection (runtime, stdio, /proc reads).
const SPARE_FDS: u64 = 64;
/// The sender looks at the clock once per this many writes.
const CHECK_EVERY: u64 = 1024;

/// An unmasked (server → client) WebSocket text frame of `total` bytes, header included.
pub fn ws_text_frame(total: usize) -> Vec<u8> {
    let mut f = vec![0x81];
    let payload = if total < 2 + 126 {
        let len = total.saturating_sub(2);
        f.push(len as u8);
        len
    } else if total < 4 + 65_536 {
        let len = total - 4;
        f.push(126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
        len
    } else {
        let len = total - 10;
        f.push(127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
        len
    };
    f.resize(f.len() + payload, b'x');
    f
}

/// What the sending thread did.
#[derive(Debug, Default)]
struct Sent {
    writes: u64,
    bytes: u64,
    /// Writes that took less than the frame (the rest followed in more writes).
    short_writes: u64,
    elapsed: Duration,
    cpu_before: Option<ThreadCpu>,
    cpu_after: Option<ThreadCpu>,
    timeline: Vec<u64>,
    error: Option<std::io::Error>,
}

fn send_loop(
    socks: &mut [TcpStream],
    frame: &[u8],
    limit: Duration,
    max_writes: u64,
    live: &AtomicU64,
) -> Sent {
    let mut s = Sent {
        cpu_before: thread_cpu(),
        ..Sent::default()
    };
    let start = Instant::now();
    let mut counted = 0;
    'run: loop {
        for sock in socks.iter_mut() {
            let mut off = 0;
            while off < frame.len() {
                match sock.write(&frame[off..]) {
                    Ok(n) => {
                        s.writes += 1;
                        s.bytes += n as u64;
                        if off == 0 && n < frame.len() {
                            s.short_writes += 1;
                        }
                        off += n;
                    }
                    Err(e) => {
                        s.error = Some(e);
                        break 'run;
                    }
                }
            }
            if s.writes >= max_writes {
                break 'run;
            }
            if s.writes - counted >= CHECK_EVERY {
                let elapsed = start.elapsed();
                let sec = elapsed.as_secs() as usize;
                if s.timeline.len() <= sec {
                    s.timeline.resize(sec + 1, 0);
                }
                s.timeline[sec] += s.writes - counted;
                counted = s.writes;
                live.store(s.writes, Relaxed);
                if elapsed >= limit {
                    break 'run;
                }
            }
        }
    }
    s.elapsed = start.elapsed();
    s.cpu_after = thread_cpu();
    let sec = s.elapsed.as_secs() as usize;
    if s.timeline.len() <= sec {
        s.timeline.resize(sec + 1, 0);
    }
    s.timeline[sec] += s.writes - counted;
    live.store(s.writes, Relaxed);
    s
}

pub async fn floor(a: &FloorArgs, progress: &Progress) -> Result<Report, LoadError> {
    let n = a.connections;
    if n == 0 || a.frame_bytes < 2 {
        return Err(LoadError::Args(
            "--connections ≥ 1 and --frame-bytes ≥ 2".into(),
        ));
    }
    let need = 2 * n as u64 + SPARE_FDS;
    if let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
        if soft < need {
            return Err(LoadError::Args(format!(
                "{n} connections need {need} open files here (both ends live in this \
                 process); the limit is {soft}: lower --connections or raise ulimit -n"
            )));
        }
    }
    let sink = sink::start(n)?;
    let bar = progress.counter("connect", n as u64);
    let addr = sink.addr;
    let connect_bar = bar.clone();
    let mut socks = tokio::task::spawn_blocking(move || -> Result<Vec<TcpStream>, LoadError> {
        let mut socks = Vec::with_capacity(n);
        for i in 0..n {
            let s = TcpStream::connect(addr)
                .map_err(|e| LoadError::io(format!("floor connect {i}"), e))?;
            s.set_nodelay(true)
                .map_err(|e| LoadError::io("TCP_NODELAY", e))?;
            socks.push(s);
            connect_bar.set_position(i as u64 + 1);
        }
        Ok(socks)
    })
    .await
    .map_err(|e| LoadError::io("floor connect", std::io::Error::other(e)))??;
    bar.finish_and_clear();

    let frame = ws_text_frame(a.frame_bytes);
    let live = Arc::new(AtomicU64::new(0));
    let (limit, max_writes) = (a.duration, a.writes.unwrap_or(u64::MAX));
    let sender = {
        let live = live.clone();
        std::thread::Builder::new()
            .name("floor-send".into())
            .spawn(move || {
                let sent = send_loop(&mut socks, &frame, limit, max_writes, &live);
                // Closing every socket is the sink's signal to finish.
                drop(socks);
                sent
            })
            .map_err(|e| LoadError::io("floor sender thread", e))?
    };
    let pb = progress.timer("send", limit);
    let until = Instant::now() + limit;
    let start = Instant::now();
    while !sender.is_finished() && Instant::now() < until + Duration::from_secs(5) {
        pb.set_position(start.elapsed().as_millis() as u64);
        pb.set_message(format!("{} writes", live.load(Relaxed)));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pb.finish_and_clear();
    let sent = tokio::task::spawn_blocking(move || sender.join())
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| LoadError::io("floor sender", std::io::Error::other("thread panicked")))?;
    if let Some(e) = sent.error {
        return Err(LoadError::io("floor send", e));
    }
    let sink_bytes = tokio::task::spawn_blocking(move || sink.join())
        .await
        .map_err(|e| LoadError::io("floor sink", std::io::Error::other(e)))??;
    Ok(report(a, &sent, sink_bytes))
}

fn report(a: &FloorArgs, s: &Sent, sink_bytes: u64) -> Report {
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    let writes = s.writes.max(1) as f64;
    let mut r = Report::new(
        "floor",
        format!(
            "floor: {} writes of {} B round-robin over {} loopback sockets in {secs:.2}s",
            s.writes, a.frame_bytes, a.connections
        ),
    );
    r.put("connections", a.connections);
    r.put("frame_bytes", a.frame_bytes);
    r.put("duration_s", secs);
    r.section("writes");
    r.put("writes", s.writes);
    r.put("writes_per_s", s.writes as f64 / secs);
    r.put("bytes_written", s.bytes);
    r.put("mib_per_s", s.bytes as f64 / secs / (1024.0 * 1024.0));
    r.put("short_writes", s.short_writes);
    r.put("sink_bytes", sink_bytes);
    r.section("sender thread cpu");
    if let (Some(b), Some(e)) = (s.cpu_before, s.cpu_after) {
        let user = e.user_s - b.user_s;
        let sys = e.system_s - b.system_s;
        r.put("user_us_per_write", user * 1e6 / writes);
        r.put("sys_us_per_write", sys * 1e6 / writes);
        r.put("cpu_us_per_write", (user + sys) * 1e6 / writes);
        r.put(
            "on_cpu_us_per_write",
            e.on_cpu_ns
                .zip(b.on_cpu_ns)
                .map(|(e, b)| (e - b) as f64 / 1e3 / writes),
        );
        r.put("cpu_pct_core", (user + sys) * 100.0 / secs);
    }
    r.put("wall_us_per_write", secs * 1e6 / writes);
    r.timeline = Some((s.timeline.clone(), "writes per second"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_websocket_header_for_their_size() {
        let f = ws_text_frame(112);
        assert_eq!((f.len(), f[0], f[1]), (112, 0x81, 110));
        let f = ws_text_frame(1000);
        assert_eq!(
            (f.len(), f[1], u16::from_be_bytes([f[2], f[3]])),
            (1000, 126, 996)
        );
        assert_eq!(ws_text_frame(2), [0x81, 0]);
    }
}
