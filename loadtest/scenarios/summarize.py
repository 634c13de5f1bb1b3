#!/usr/bin/env python3
"""Medians of chorus-load JSON result lines (one file, one line per run)."""
import json
import statistics
import sys

FIELDS = [
    "deliveries_per_s", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms",
    "loss", "dups", "reorders", "publish_errors", "connect_failures", "disconnects",
    "server_cpu_s", "deliveries_per_server_cpu_s", "server_rss_kib", "loadgen_cpu_s",
    "extra_cpu_pct_core", "redis_sub_conns", "redis_sub_conns_after_restart",
    "resubscribe_pushes", "resubscribed", "recovered_true", "recovered_false",
    "recovered_publications", "resubscribe_errors", "resubscribe_wait_p50_ms",
    "resubscribe_wait_max_ms", "resubscribe_span_ms", "redis_resubscribed_ms",
    "redis_down_ms", "gateway_down_ms", "reconnect_attempts", "reconnect_failures", "reconnected",
    "load_avg",
]


def main() -> None:
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
    if not rows:
        print("no runs")
        return
    print(f"medians over {len(rows)} run(s) of {rows[0].get('scenario')} "
          f"(commit {rows[0].get('commit')}, nproc {rows[0].get('nproc')}):")
    for f in FIELDS:
        vals = [r[f] for r in rows if isinstance(r.get(f), (int, float))]
        if vals:
            print(f"  {f:32s} median {statistics.median(vals):>12.3f}   runs "
                  + " ".join(f"{v:.3f}" for v in vals))


main()
