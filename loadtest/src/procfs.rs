//! CPU and memory of processes and threads, read from `/proc` (Linux only, no unsafe):
//! server processes (`--server-pid`, `--extra-pid`), the load generator itself, and the
//! sending thread of the `floor` scenario.

/// `/proc/*/stat` times are in clock ticks; USER_HZ is 100 on every Linux architecture we
/// run on (it is a kernel ABI constant, not the scheduler's HZ).
const TICKS_PER_S: f64 = 100.0;

/// CPU (utime + stime) and RSS of one process, or the sum over several.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcSample {
    pub cpu_secs: f64,
    pub rss_kib: u64,
}

/// User and system CPU seconds from a `stat` line (fields 14 and 15).
fn stat_times(stat: &str) -> Option<(f64, f64)> {
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime as f64 / TICKS_PER_S, stime as f64 / TICKS_PER_S))
}

/// Reads `/proc/PID/stat` and `VmRSS` of `/proc/PID/status` (`pid` may be `self`).
pub fn sample_proc(pid: &str) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (user, system) = stat_times(&stat)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Some(ProcSample {
        cpu_secs: user + system,
        rss_kib,
    })
}

/// Sums samples of several processes; `None` when there are none or any is unreadable
/// (e.g. a process restarted inside the window: another pid).
pub fn sample_all(pids: &[String]) -> Option<ProcSample> {
    if pids.is_empty() {
        return None;
    }
    let mut total = ProcSample::default();
    for p in pids {
        let s = sample_proc(p)?;
        total.cpu_secs += s.cpu_secs;
        total.rss_kib += s.rss_kib;
    }
    Some(total)
}

/// CPU of the calling thread: user and system seconds (tick resolution, 10 ms) and the
/// scheduler's on-CPU nanoseconds (`schedstat`, exact, user + system together).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ThreadCpu {
    pub user_s: f64,
    pub system_s: f64,
    pub on_cpu_ns: Option<u64>,
}

/// Samples the calling thread (`/proc/thread-self`); `None` when /proc is not mounted.
pub fn thread_cpu() -> Option<ThreadCpu> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let (user_s, system_s) = stat_times(&stat)?;
    // Absent when the kernel lacks CONFIG_SCHEDSTATS-style accounting; ticks remain.
    let on_cpu_ns = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok());
    Some(ThreadCpu {
        user_s,
        system_s,
        on_cpu_ns,
    })
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_name_with_spaces() {
        let line = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0 1 0";
        assert_eq!(stat_times(line), Some((2.5, 0.75)));
        assert_eq!(stat_times("42 (x) S 1"), None);
    }

    #[test]
    fn own_process_and_thread_are_readable() {
        let s = sample_proc("self").expect("own /proc entry");
        assert!(s.rss_kib > 0);
        assert!(sample_all(&["self".into(), "self".into()]).is_some());
        assert_eq!(sample_all(&[]), None);
        assert_eq!(sample_all(&["self".into(), "0".into()]), None);
        // Burn a little CPU so the scheduler's counter moves.
        let t0 = thread_cpu().expect("thread-self");
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let t1 = thread_cpu().expect("thread-self");
        if let (Some(a), Some(b)) = (t0.on_cpu_ns, t1.on_cpu_ns) {
            assert!(b > a);
        }
    }
}
