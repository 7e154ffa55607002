#!/bin/bash
# Baseline RDMA WRITE numbers from perftest on a soft-RoCE device, server and
# client on the same machine over loopback. Meant to run inside the guest:
#
#   rxe-setup/in-guest.sh rxe-setup/perftest.sh
#
# but works on any host where rxe-up.sh brought a device up. Prints one JSON
# object per line on stdout:
#   {"tool":"ib_write_bw","device":"rxe0","gid_index":1,"size":65536,"iters":2000,"MBps":28.9,"bytes_per_s":30303846,"MBps_peak":31.2}
#   {"tool":"ib_write_lat","device":"rxe0","gid_index":1,"size":8,"iters":2000,"lat_us_p50":49.8,"lat_us_avg":51.0,...}
# MBps is perftest's "MB/sec", which is MiB/s (2^20 bytes per second).
#
# Environment:
#   MALT_RDMA_DEVICE        device (default rxe0)
#   MALT_RDMA_GID_INDEX     GID index (default 1, ::ffff:127.0.0.1 on lo)
#   MALT_PERF_BW_SIZES      message sizes for ib_write_bw (default "65536 4194304")
#   MALT_PERF_BW_BYTES      bytes moved per ib_write_bw run (default 128 MiB);
#                           iterations = max(5, bytes / size)
#   MALT_PERF_LAT_SIZE      message size for ib_write_lat (default 8)
#   MALT_PERF_LAT_ITERS     ib_write_lat iterations (default 2000)
#   MALT_PERF_PORT          first TCP port for perftest's exchange (default 18515)
#   MALT_PERF_TIMEOUT       seconds allowed per perftest run (default 300)
set -euo pipefail

prog=perftest.sh
die() {
    printf '%s: %s\n' "$prog" "$*" >&2
    exit 1
}

dev=${MALT_RDMA_DEVICE:-rxe0}
gid=${MALT_RDMA_GID_INDEX:-1}
bw_sizes=${MALT_PERF_BW_SIZES:-65536 4194304}
bw_bytes=${MALT_PERF_BW_BYTES:-134217728}
lat_size=${MALT_PERF_LAT_SIZE:-8}
lat_iters=${MALT_PERF_LAT_ITERS:-2000}
port=${MALT_PERF_PORT:-18515}
run_timeout=${MALT_PERF_TIMEOUT:-300}

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
for v in gid bw_bytes lat_size lat_iters port run_timeout; do
    is_uint "${!v}" || die "$v must be a non-negative integer, got '${!v}'"
done
for s in $bw_sizes; do { is_uint "$s" && ((s > 0)); } || die "bad size '$s' in MALT_PERF_BW_SIZES"; done
((lat_iters >= 5)) || die "MALT_PERF_LAT_ITERS must be at least 5"
[[ $dev =~ ^[A-Za-z0-9_.-]+$ ]] || die "MALT_RDMA_DEVICE is not a device name: '$dev'"

for c in ib_write_bw ib_write_lat ss timeout; do
    command -v "$c" >/dev/null || die "'$c' not found (Debian: apt-get install perftest iproute2 coreutils)"
done
[[ -d /sys/class/infiniband/$dev ]] ||
    die "no RDMA device $dev; run this through rxe-setup/in-guest.sh, or bring rxe up with rxe-setup/rxe-up.sh"
grep -qs ACTIVE "/sys/class/infiniband/$dev/ports/1/state" || die "$dev port 1 is not ACTIVE"
[[ -r /sys/class/infiniband/$dev/ports/1/gids/$gid ]] || die "$dev has no GID index $gid"
[[ $(ulimit -l) == unlimited ]] || ulimit -l unlimited 2>/dev/null ||
    printf '%s: warning: ulimit -l is %s KiB; memory registration may fail\n' "$prog" "$(ulimit -l)" >&2

work=$(mktemp -d "${TMPDIR:-/tmp}/malt-perftest.XXXXXX")
server_pid=''
cleanup() {
    if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; fi
    rm -rf -- "$work"
}
trap cleanup EXIT

# run_pair TOOL LOGNAME ARGS...: server in the background, client against
# 127.0.0.1 once the server listens; the client's report lands in LOGNAME.
run_pair() {
    local tool=$1 name=$2 deadline
    shift 2
    timeout "$run_timeout" "$tool" -d "$dev" -x "$gid" -F -p "$port" "$@" \
        >"$work/$name.server" 2>&1 &
    server_pid=$!
    deadline=$((SECONDS + 30))
    until [[ -n $(ss -Hltn "sport = :$port" 2>/dev/null) ]]; do
        if ! kill -0 "$server_pid" 2>/dev/null; then
            cat -- "$work/$name.server" >&2
            die "$tool server exited before listening on port $port"
        fi
        ((SECONDS < deadline)) || die "$tool server not listening on port $port after 30 s"
        sleep 0.1
    done
    if ! timeout "$run_timeout" "$tool" -d "$dev" -x "$gid" -F -p "$port" "$@" 127.0.0.1 \
        >"$work/$name.client" 2>&1; then
        cat -- "$work/$name.client" "$work/$name.server" >&2
        die "$tool client failed ($*)"
    fi
    wait "$server_pid" || {
        cat -- "$work/$name.server" >&2
        die "$tool server failed ($*)"
    }
    server_pid=''
    port=$((port + 1))
}

# The numbers row that follows perftest's "#bytes" header.
report_row() {
    awk '/^[[:space:]]*#bytes/ { hdr = 1; next } hdr && $1 ~ /^[0-9]+$/ { print; exit }' "$1"
}

for size in $bw_sizes; do
    iters=$((bw_bytes / size))
    ((iters >= 5)) || iters=5
    run_pair ib_write_bw "bw-$size" -s "$size" -n "$iters"
    row=$(report_row "$work/bw-$size.client")
    [[ -n $row ]] || {
        cat -- "$work/bw-$size.client" >&2
        die "no report from ib_write_bw -s $size"
    }
    # #bytes #iterations BW-peak[MiB/s] BW-average[MiB/s] MsgRate[Mpps]
    read -r r_bytes r_iters peak avg _ <<<"$row"
    awk -v dev="$dev" -v gid="$gid" -v size="$r_bytes" -v iters="$r_iters" -v peak="$peak" -v avg="$avg" 'BEGIN {
        printf "{\"tool\":\"ib_write_bw\",\"device\":\"%s\",\"gid_index\":%d,\"size\":%d,\"iters\":%d,\"MBps\":%.2f,\"bytes_per_s\":%.0f,\"MBps_peak\":%.2f}\n",
            dev, gid, size, iters, avg, avg * 1048576, peak
    }'
done

run_pair ib_write_lat lat -s "$lat_size" -n "$lat_iters"
row=$(report_row "$work/lat.client")
[[ -n $row ]] || {
    cat -- "$work/lat.client" >&2
    die "no report from ib_write_lat -s $lat_size"
}
# #bytes #iterations t_min t_max t_typical t_avg t_stdev 99% 99.9%  (usec)
read -r r_bytes r_iters t_min t_max t_typ t_avg t_stdev p99 p999 _ <<<"$row"
awk -v dev="$dev" -v gid="$gid" -v size="$r_bytes" -v iters="$r_iters" -v mn="$t_min" -v mx="$t_max" \
    -v typ="$t_typ" -v avg="$t_avg" -v sd="$t_stdev" -v p99="$p99" -v p999="$p999" 'BEGIN {
    printf "{\"tool\":\"ib_write_lat\",\"device\":\"%s\",\"gid_index\":%d,\"size\":%d,\"iters\":%d,\"lat_us_p50\":%.2f,\"lat_us_avg\":%.2f,\"lat_us_min\":%.2f,\"lat_us_max\":%.2f,\"lat_us_stdev\":%.2f,\"lat_us_p99\":%.2f,\"lat_us_p999\":%.2f}\n",
        dev, gid, size, iters, typ, avg, mn, mx, sd, p99, p999
}'
