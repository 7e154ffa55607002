#!/usr/bin/env bash
# Interleaved A/B comparison of two malt binaries on the benchmarks that a
# change must not slow down: `malt bench write` on shm (4 MiB and 64 B) and
# `malt bench gather` (2 ranks, 1 Mi floats). Runs PAIRS pairs (default 10),
# alternating which binary goes first, and prints for each metric the two
# medians with their ranges and the ratio new/old of the medians (for a
# time, old/new: above 1 means the new binary is faster).
#
#   benches/ab.sh OLD_MALT NEW_MALT
set -euo pipefail
old=${1:?usage: benches/ab.sh OLD_MALT NEW_MALT} new=${2:?usage: benches/ab.sh OLD_MALT NEW_MALT}
pairs=${PAIRS:-10}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run() { # binary tag
    "$1" bench write --transport shm --size 4194304 --iters 200 --repeat 3 --json | tail -1 >>"$out/$2.w4m"
    "$1" bench write --transport shm --size 64 --iters 20000 --repeat 3 --json | tail -1 >>"$out/$2.w64"
    "$1" bench gather --len 1048576 --graph all --sync bsp --rounds 200 --ranks 2 --json | tail -1 >>"$out/$2.gather"
}
for ((i = 0; i < pairs; i++)); do
    if ((i % 2 == 0)); then run "$old" old; run "$new" new; else run "$new" new; run "$old" old; fi
done
python3 - "$out" <<'PY'
import json, statistics, sys
d = sys.argv[1]
def vals(tag, bench, key):
    return [json.loads(l)[key] for l in open(f"{d}/{tag}.{bench}") if l.strip()]
rows = [
    ("bench write shm 4 MiB, GB/s", "w4m", "gbps", False),
    ("bench write shm 4 MiB, ratio to memcpy in the same run", "w4m", "ratio", False),
    ("bench write shm 64 B, GB/s", "w64", "gbps", False),
    ("bench write shm 64 B, p50 latency us", "w64", "lat_us_p50", True),
    ("bench gather 2 ranks 1 Mi f32, round p50 us", "gather", "round_us_p50", True),
]
print("| metric | old median (range) | new median (range) | new/old (time: old/new) |")
print("|---|---|---|---|")
for name, b, k, is_time in rows:
    o, n = vals("old", b, k), vals("new", b, k)
    mo, mn = statistics.median(o), statistics.median(n)
    r = mo / mn if is_time else mn / mo
    print(f"| {name} | {mo:.4g} ({min(o):.4g}-{max(o):.4g}) | {mn:.4g} ({min(n):.4g}-{max(n):.4g}) | {r:.3f} |")
PY
