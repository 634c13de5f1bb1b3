//! The standard `process_*` families, read from `/proc/self` when `/metrics` is scraped.
//!
//! Rendered as Prometheus text by [`process_families`] and appended to the recorder's output
//! (the `metrics` crate's counters are integers; CPU seconds are not). The names, types and
//! meanings are those of the Prometheus client libraries, so stock dashboards and alerts work.
//! Off Linux (no `/proc`) nothing is rendered.

use std::fmt::Write as _;

/// Linux reports CPU times in `USER_HZ` ticks, fixed at 100 for user space on the
/// architectures chorus builds for (x86-64, arm64).
const TICKS_PER_SECOND: f64 = 100.0;

/// One reading of the process.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub threads: u64,
    pub start_time_seconds: f64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
}

/// Reads this process's statistics; `None` where `/proc/self/stat` cannot be read.
pub fn read() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let mut stats = parse_stat(&stat)?;
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| parse_btime(&s))
        .unwrap_or(0);
    stats.start_time_seconds += boot as f64;
    if let Some(rss) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_vm_rss(&s))
    {
        stats.resident_bytes = rss;
    }
    stats.open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    stats.max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| parse_max_open_files(&s));
    Some(stats)
}

/// Parses `/proc/self/stat`: CPU time, threads, start time (seconds since boot), virtual size,
/// and resident pages × 4 KiB as a fallback for `VmRSS`.
fn parse_stat(stat: &str) -> Option<ProcessStats> {
    // The command name (field 2) is in parentheses and may contain spaces: split after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state); field n is f[n - 3].
    let num = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let (utime, stime) = (num(14)?, num(15)?);
    Some(ProcessStats {
        cpu_seconds: (utime + stime) as f64 / TICKS_PER_SECOND,
        threads: num(20).unwrap_or(0),
        start_time_seconds: num(22).unwrap_or(0) as f64 / TICKS_PER_SECOND,
        virtual_bytes: num(23).unwrap_or(0),
        resident_bytes: num(24).unwrap_or(0) * 4096,
        ..Default::default()
    })
}

fn parse_btime(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

fn parse_max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The `process_*` families as Prometheus text (with `# HELP` and `# TYPE`); empty off Linux.
pub fn process_families() -> String {
    read().map(|s| render(&s)).unwrap_or_default()
}

fn render(s: &ProcessStats) -> String {
    let mut out = String::with_capacity(1024);
    let mut family = |name: &str, kind: &str, help: &str, value: String| {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n\n"
        );
    };
    family(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        format!("{}", s.cpu_seconds),
    );
    family(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        s.resident_bytes.to_string(),
    );
    family(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        s.virtual_bytes.to_string(),
    );
    family(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        s.open_fds.to_string(),
    );
    if let Some(max) = s.max_fds {
        family(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors (the soft limit).",
            max.to_string(),
        );
    }
    family(
        "process_threads",
        "gauge",
        "Number of OS threads in the process.",
        s.threads.to_string(),
    );
    family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch in seconds.",
        format!("{}", s.start_time_seconds),
    );
    out
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_stat_line_with_a_spaced_name() {
        // Fields 3..=24 after "(name with) spaces)".
        let stat =
            "4242 (chorus (x) y) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 7 0 12345 987654 321";
        let s = parse_stat(stat).expect("parsed");
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.threads, 7);
        assert_eq!(s.start_time_seconds, 123.45);
        assert_eq!(s.virtual_bytes, 987_654);
        assert_eq!(s.resident_bytes, 321 * 4096);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn parses_status_limits_and_btime() {
        assert_eq!(
            parse_vm_rss("Name:\tchorus\nVmRSS:\t   2048 kB\n"),
            Some(2048 * 1024)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            20000                20000                files\n";
        assert_eq!(parse_max_open_files(limits), Some(20_000));
        assert_eq!(
            parse_btime("cpu 1 2 3\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn renders_every_family_with_help_and_type() {
        let text = render(&ProcessStats {
            cpu_seconds: 1.5,
            max_fds: Some(1024),
            ..Default::default()
        });
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_threads",
            "process_start_time_seconds",
        ] {
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
        }
        assert!(text.contains("process_cpu_seconds_total 1.5\n"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let s = read().expect("/proc/self is readable on Linux");
        assert!(s.resident_bytes > 0 && s.threads >= 1 && s.open_fds >= 3);
        assert!(s.start_time_seconds > 1_600_000_000.0);
    }
}
