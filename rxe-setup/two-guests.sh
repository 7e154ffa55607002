#!/bin/bash
# Two soft-RoCE guests joined by a qemu socket network on loopback, one malt
# rank in each: `malt check --transport verbs` across a real (emulated)
# Ethernet link, rxe on each guest's virtio NIC.
#
#   rxe-setup/two-guests.sh [MALT_BINARY] [-- CHECK_ARGS...]
#
# MALT_BINARY defaults to $CARGO_TARGET_DIR/release/malt (or
# target/release/malt); it must be built with `--features verbs` and lie
# under the current directory or CARGO_TARGET_DIR (the guests see the host
# root read-only and those directories read-write). CHECK_ARGS go to
# `malt check` (default: --size 65536 --rounds 10).
#
# Guest 0 listens on 127.0.0.1:PORT (qemu -netdev socket,listen), guest 1
# connects to it; they get 10.77.0.1/24 and 10.77.0.2/24 on eth0, rxe0 sits
# on eth0, and rank 0's control channel listens on 10.77.0.1
# (MALT_MASTER_ADDR). Each rank's output is prefixed with [g0]/[g1].
#
# Environment: MALT_TWO_GUESTS_PORT (default: a free port from 20000),
# MALT_TWO_GUESTS_TIMEOUT (seconds per guest, default 600), MALT_TIMEOUT
# (the ranks' bound on every wait, default 180), and in-guest.sh's own
# variables (MALT_GUEST_CPUS, MALT_GUEST_MEM, ...), which apply to both.
#
# Exit status: 0 when both ranks exit 0 and print "ok":true, 1 otherwise,
# 125 when a guest could not be started.
set -euo pipefail

prog=two-guests.sh
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
die() {
    printf '%s: %s\n' "$prog" "$*" >&2
    exit 125
}

malt=${CARGO_TARGET_DIR:-target}/release/malt
if (($# > 0)) && [[ $1 != -- ]]; then
    malt=$1
    shift
fi
if (($# > 0)) && [[ $1 == -- ]]; then shift; fi
check_args=("$@")
((${#check_args[@]} > 0)) || check_args=(--size 65536 --rounds 10)

[[ -x $malt ]] || die "no malt binary at $malt (cargo build --release -p malt --features verbs)"
malt=$(cd -- "$(dirname -- "$malt")" && pwd -P)/$(basename -- "$malt")
timeout_s=${MALT_TWO_GUESTS_TIMEOUT:-600}
# One vCPU per guest: two guests of two TCG vCPUs each on a 2-core host
# starved a guest's second CPU of timer interrupts (RCU stalls, no boot
# within 600 s, 2026-12-07); a rank needs one.
cpus=${MALT_TWO_GUESTS_CPUS:-1}
[[ $cpus =~ ^[1-9][0-9]?$ ]] || die "MALT_TWO_GUESTS_CPUS must be 1 to 99, got '$cpus'"
[[ $timeout_s =~ ^[0-9]+$ ]] || die "MALT_TWO_GUESTS_TIMEOUT must be seconds, got '$timeout_s'"
command -v ss >/dev/null || die "'ss' not found (apt-get install iproute2)"

listening() { [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]; }
port=${MALT_TWO_GUESTS_PORT:-}
if [[ -z $port ]]; then
    for ((p = 20000 + RANDOM % 20000, n = 0; n < 200; p++, n++)); do
        if ! listening "$p"; then
            port=$p
            break
        fi
    done
    [[ -n $port ]] || die "no free port found"
fi
[[ $port =~ ^[0-9]+$ ]] || die "MALT_TWO_GUESTS_PORT must be a port number, got '$port'"

"$here/in-guest.sh" --prepare >/dev/null || die "guest preparation failed"

work=$(mktemp -d "${TMPDIR:-/tmp}/malt-two-guests.XXXXXX")
pids=()
# shellcheck disable=SC2317 # invoked through the EXIT trap
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf -- "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

token="two-guests-$$-$RANDOM$RANDOM"
master_port=$((29600 + RANDOM % 300))

# guest N: in-guest.sh with a NIC, running rank N of `malt check`.
guest() {
    local n=$1 backend=$2
    env MALT_GUEST_NETDEV="$backend" MALT_GUEST_MAC="52:54:00:6d:6c:0$n" \
        MALT_GUEST_NET_ADDR="10.77.0.$((n + 1))/24" MALT_GUEST_RXE_NETDEV=eth0 \
        MALT_GUEST_TIMEOUT="$timeout_s" MALT_GUEST_CPUS="$cpus" \
        MALT_RANK="$n" MALT_WORLD_SIZE=2 MALT_JOB_TOKEN="$token" \
        MALT_MASTER_ADDR=10.77.0.1 MALT_MASTER_PORT="$master_port" \
        MALT_TIMEOUT="${MALT_TIMEOUT:-180}" \
        "$here/in-guest.sh" "$malt" check --transport verbs "${check_args[@]}" \
        >"$work/g$n.out" 2>"$work/g$n.err"
}

start=$SECONDS
guest 0 "socket,listen=127.0.0.1:$port" &
pids+=($!)
# qemu's connecting side needs the listener up before it starts.
deadline=$((SECONDS + 120))
until listening "$port"; do
    if ! kill -0 "${pids[0]}" 2>/dev/null; then
        cat -- "$work/g0.err" >&2
        die "guest 0 exited before listening on port $port"
    fi
    ((SECONDS < deadline)) || die "guest 0's qemu is not listening on port $port after 120 s"
    sleep 0.2
done
guest 1 "socket,connect=127.0.0.1:$port" &
pids+=($!)

rc0=0 rc1=0
wait "${pids[0]}" || rc0=$?
wait "${pids[1]}" || rc1=$?
pids=()
elapsed=$((SECONDS - start))

for n in 0 1; do
    sed "s/^/[g$n] /" "$work/g$n.out"
    sed "s/^/[g$n] /" "$work/g$n.err" >&2
done
ok=$(cat -- "$work/g0.out" "$work/g1.out" | grep -c '"ok":true' || true)
printf '{"two_guests":true,"rank0_exit":%d,"rank1_exit":%d,"ok_lines":%d,"seconds":%d}\n' \
    "$rc0" "$rc1" "$ok" "$elapsed"
if ((rc0 == 0 && rc1 == 0 && ok == 2)); then
    exit 0
fi
if ((rc0 == 125 || rc1 == 125)); then exit 125; fi
exit 1
