#!/bin/bash
# malt's verbs transport next to perftest, in one soft-RoCE guest boot:
# ib_write_bw at 64 KiB and 4 MiB and ib_write_lat at 8 B (perftest.sh),
# then `malt bench write --transport verbs --json` at the same sizes, then
# the ratios.
#
#   rxe-setup/bench-verbs.sh [MALT_BINARY]
#
# On a host without an RDMA device it runs itself inside the guest
# (in-guest.sh); where a device is up (inside the guest, or after
# rxe-up.sh) it runs directly. MALT_BINARY defaults to
# $CARGO_TARGET_DIR/release/malt (or target/release/malt), built with
# `--features verbs`; for the guest it must lie under the current directory
# or CARGO_TARGET_DIR.
#
# Output: perftest's JSON lines, malt's JSON lines, then one summary line:
#   {"bench":"verbs-vs-perftest","bw_64k_ratio":0.93,"bw_4m_ratio":1.02,"lat_8b_ratio":1.4,...}
# bw ratios are malt's bytes/s over ib_write_bw's (target >= 0.8); the
# latency ratio is malt's median write-until-visible time over
# ib_write_lat's median (target <= 1.25).
#
# Environment: MALT_PERF_BW_BYTES (bytes per bandwidth run, default 128 MiB,
# used for both tools), MALT_PERF_LAT_ITERS (default 2000, both tools),
# MALT_BENCH_STRICT=1 (exit 1 when a target is missed), and perftest.sh's and
# in-guest.sh's variables.
set -euo pipefail

prog=bench-verbs.sh
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
die() {
    printf '%s: %s\n' "$prog" "$*" >&2
    exit 1
}

malt=${1:-${CARGO_TARGET_DIR:-target}/release/malt}
[[ -x $malt ]] || die "no malt binary at $malt (cargo build --release -p malt --features verbs)"
malt=$(cd -- "$(dirname -- "$malt")" && pwd -P)/$(basename -- "$malt")

if ! compgen -G '/sys/class/infiniband/*' >/dev/null; then
    exec "$here/in-guest.sh" "$here/bench-verbs.sh" "$malt"
fi

bw_bytes=${MALT_PERF_BW_BYTES:-134217728}
lat_iters=${MALT_PERF_LAT_ITERS:-2000}
[[ $bw_bytes =~ ^[0-9]+$ && $lat_iters =~ ^[0-9]+$ ]] || die "MALT_PERF_BW_BYTES and MALT_PERF_LAT_ITERS must be integers"
export MALT_PERF_BW_SIZES="65536 4194304" MALT_PERF_LAT_SIZE=8
export MALT_PERF_BW_BYTES=$bw_bytes MALT_PERF_LAT_ITERS=$lat_iters

work=$(mktemp -d "${TMPDIR:-/tmp}/malt-bench-verbs.XXXXXX")
trap 'rm -rf -- "$work"' EXIT

"$here/perftest.sh" | tee "$work/perftest"

iters_for() {
    local n=$(($1 / $2))
    ((n >= 5)) || n=5
    printf '%d\n' "$n"
}
for size in 8 65536 4194304; do
    if ((size == 8)); then iters=$lat_iters; else iters=$(iters_for "$bw_bytes" "$size"); fi
    "$malt" bench write --transport verbs --json --size "$size" --iters "$iters" | tee -a "$work/malt"
done

# field FILE TOOL_OR_TRANSPORT SIZE KEY: a number from the matching JSON line.
field() {
    awk -v who="$2" -v size="$3" -v key="$4" '
        index($0, "\"" who "\"") && index($0, "\"size\":" size ",") {
            if (match($0, "\"" key "\":[-0-9.eE+]+")) {
                v = substr($0, RSTART, RLENGTH); sub(/^[^:]*:/, "", v); print v; exit
            }
        }' "$1"
}
pb64=$(field "$work/perftest" ib_write_bw 65536 bytes_per_s)
pb4m=$(field "$work/perftest" ib_write_bw 4194304 bytes_per_s)
pl8=$(field "$work/perftest" ib_write_lat 8 lat_us_p50)
mg64=$(field "$work/malt" verbs 65536 gbps)
mg4m=$(field "$work/malt" verbs 4194304 gbps)
ml8=$(field "$work/malt" verbs 8 lat_us_p50)
for v in pb64 pb4m pl8 mg64 mg4m ml8; do
    [[ -n ${!v} ]] || die "missing a result ($v)"
    # A zero (perftest has printed 0.00 latencies) would make a ratio inf.
    awk -v x="${!v}" 'BEGIN { exit !(x + 0 > 0) }' ||
        die "result $v is ${!v}, not a positive number: see the tool's output above"
done

awk -v pb64="$pb64" -v pb4m="$pb4m" -v pl8="$pl8" -v mg64="$mg64" -v mg4m="$mg4m" -v ml8="$ml8" \
    -v strict="${MALT_BENCH_STRICT:-0}" 'BEGIN {
    mb64 = mg64 * 1e9 / 8; mb4m = mg4m * 1e9 / 8
    r64 = mb64 / pb64; r4m = mb4m / pb4m; rl = ml8 / pl8
    pass = (r64 >= 0.8 && r4m >= 0.8 && rl <= 1.25)
    printf "%-28s %14s %14s %8s %8s\n", "", "malt", "perftest", "ratio", "target"
    printf "%-28s %11.2f MB/s %9.2f MB/s %8.3f %8s\n", "write 64 KiB throughput", mb64 / 1e6, pb64 / 1e6, r64, ">= 0.8"
    printf "%-28s %11.2f MB/s %9.2f MB/s %8.3f %8s\n", "write 4 MiB throughput", mb4m / 1e6, pb4m / 1e6, r4m, ">= 0.8"
    printf "%-28s %14.2f %14.2f %8.3f %8s\n", "write 8 B latency p50 (us)", ml8, pl8, rl, "<= 1.25"
    printf "{\"bench\":\"verbs-vs-perftest\",\"bw_64k_ratio\":%.4f,\"bw_4m_ratio\":%.4f,\"lat_8b_ratio\":%.4f,\"malt_bw_64k_bytes_per_s\":%.0f,\"perftest_bw_64k_bytes_per_s\":%.0f,\"malt_bw_4m_bytes_per_s\":%.0f,\"perftest_bw_4m_bytes_per_s\":%.0f,\"malt_lat_8b_us_p50\":%.2f,\"perftest_lat_8b_us_p50\":%.2f,\"targets_met\":%s}\n",
        r64, r4m, rl, mb64, pb64, mb4m, pb4m, ml8, pl8, pass ? "true" : "false"
    exit (strict == 1 && !pass) ? 1 : 0
}'
