#!/usr/bin/env python3
"""Markdown table of the bandwidth runs of one label: medians per payload and mode.

    python3 loadtest/bandwidth/table.py loadtest/results/<date>/bandwidth.jsonl <label>
"""
import json
import statistics
import sys


def main() -> None:
    path, label = sys.argv[1], sys.argv[2]
    runs = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    runs = [r for r in runs if r.get("label") == label]
    groups: dict = {}
    for r in runs:
        groups.setdefault((r["payload"], r["mode"]), []).append(r)
    order = ["plain", "deflate", "delta", "deflate+delta"]
    print("| payload | mode | payload B | wire B per delivery | vs plain | server CPU µs per delivery | runs |")
    print("|---|---|---|---|---|---|---|")
    for payload in ["chat", "ticker"]:
        plain = groups.get((payload, "plain"))
        base = statistics.median(r["wire_bytes_per_delivery"] for r in plain) if plain else None
        for mode in order:
            rs = groups.get((payload, mode))
            if not rs:
                continue
            wire = statistics.median(r["wire_bytes_per_delivery"] for r in rs)
            cpu = statistics.median(r["server_cpu_us_per_delivery"] for r in rs)
            cpus = ", ".join(f"{r['server_cpu_us_per_delivery']:.2f}" for r in rs)
            ratio = f"{wire / base:.2f}" if base else ""
            print(
                f"| {payload} | {mode} | {rs[0]['payload_bytes_avg']} | {wire:.1f} | {ratio} "
                f"| {cpu:.2f} ({cpus}) | {len(rs)} |"
            )


if __name__ == "__main__":
    main()
