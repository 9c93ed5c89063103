#!/usr/bin/env python3
"""Summarises a `cargo build --timings` report: the slowest crates and which of our crates pulls each in.

    cargo build --release --workspace --bins --timings      # writes target/cargo-timings/cargo-timing.html
    scripts/build-costs.py [target/cargo-timings/cargo-timing.html] [--top 15]

Prints a markdown table (crate, seconds of compilation, share of the sum, the workspace
crates that depend on it) and the sum of all units' durations. Durations are wall seconds
per unit as cargo measured them; on a loaded machine compare shares, not seconds.
"""
import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

OURS = {"lambdaless-contracts", "lambdaless-runtime", "lambdaless-client", "lambdaless-bench",
        "lambdaless-testkit", "lambdaless-tests", "lambdaless", "broker", "api-gateway", "mover",
        "mqtt-api", "fetch-responder", "streamer"}


def units(report: Path):
    text = report.read_text()
    m = re.search(r"const UNIT_DATA = (\[.*?\]);\n", text, re.S)
    if not m:
        sys.exit(f"{report}: no UNIT_DATA (not a cargo timings report?)")
    return json.loads(m.group(1))


def pulled_in_by(name: str, version: str):
    """Our crates that (transitively) depend on name@version, nearest first."""
    try:
        out = subprocess.run(["cargo", "tree", "-e", "normal,build", "--workspace", "-i", f"{name}@{version}",
                              "--prefix", "depth", "--charset", "ascii"],
                             capture_output=True, text=True, check=True).stdout
    except subprocess.CalledProcessError:
        return []
    found = []
    for line in out.splitlines():
        m = re.match(r"(\d+)([\w-]+) v", line)
        if m and m.group(2) in OURS and m.group(2) not in found:
            found.append(m.group(2))
    return found


def main():
    args = sys.argv[1:]
    top = 15
    if "--top" in args:
        i = args.index("--top")
        top = int(args[i + 1])
        del args[i:i + 2]
    report = Path(args[0]) if args else Path("target/cargo-timings/cargo-timing.html")
    per_crate = defaultdict(float)
    versions = {}
    for u in units(report):
        if u["name"] in OURS:
            continue
        key = u["name"]
        per_crate[key] += float(u["duration"])
        versions[key] = u["version"]
    total = sum(per_crate.values())
    print("| crate | seconds | share | pulled in by |")
    print("|---|---:|---:|---|")
    for name, secs in sorted(per_crate.items(), key=lambda kv: -kv[1])[:top]:
        by = pulled_in_by(name, versions[name])
        shown = ", ".join(by[:4]) + (" …" if len(by) > 4 else "")
        print(f"| {name} {versions[name]} | {secs:.1f} | {100 * secs / total:.1f}% | {shown} |")
    print(f"\nAll {len(per_crate)} dependency crates: {total:.0f} s of unit time "
          f"(build scripts and proc-macros included).")


if __name__ == "__main__":
    main()
