#!/usr/bin/env bash
# malt next to Open MPI and Gloo on this machine, in one command.
#
#   benches/peers/run.sh [--quick]
#
# Installs what it needs from Debian (openmpi-bin, libopenmpi-dev,
# libgloo-dev), builds the peer programs of this directory and malt, then
# runs, interleaved run by run with the same sizes, rank counts and CPUs:
#
#   point to point, 2 ranks: `malt bench write` (shm) | MPI_Put + MPI_Win_flush
#     in an MPI_Win_lock_all epoch (window from MPI_Win_allocate, and from
#     MPI_Win_create) | memcpy in one process into one buffer (the plain
#     ceiling) and into two buffers in turn (the two-slot ceiling: malt's
#     writes alternate between two slots);
#   model exchange, 2, 4 and 8 ranks: `malt bench gather` (scatter +
#     gather(Avg), BSP, graph all) with the direct schedule and with the
#     allreduce schedule (two systems, both forced) | MPI_Allreduce(sum) +
#     divide | Gloo allreduce(sum) + divide (TCP over 127.0.0.1: Gloo has no
#     shared-memory transport).
#
# Sizes: 1 Ki to 16 Mi floats in steps of 4 (writes of 4 KiB to 64 MiB).
# Every system gets the same plan (operations per size and rank count), and
# its CPU time (getrusage, all ranks) next to its wall time.
#
# Output (stdout): the Markdown report, then, as the last line, one JSON
# object with the targets (ratios of malt's speed over the peer's: medians
# over runs, then the smallest cell and the smallest per-rank-count geometric
# mean over sizes; malt is the schedule `--schedule auto` picks) and the
# script's run time. Files go to $OUT: raw.jsonl (every run's lines),
# report.md, report.json, peers.png/svg, log.
#
# Environment:
#   QUICK=1        same as --quick: 1 Ki and 1 Mi floats, 2 ranks, 3 runs
#   RUNS=N         runs per system and size (default 7, quick 3)
#   RANKS="2 4 8"  rank counts of the model exchange (quick: 2)
#   FLOATS="1024 1048576"
#                  sizes in floats (default 1 Ki to 16 Mi in steps of 4;
#                  writes use 4 bytes per float)
#   CPUS=LIST      CPUs every process of every system runs on (taskset
#                  list; default: all CPUs this shell may use)
#   PIN=1          also pin rank r to the (r mod k)-th of those CPUs, in every
#                  system (default 0: the scheduler places threads; see the
#                  README: pinning a Gloo rank to one core puts its network
#                  thread on the core its main thread spins on)
#   OUT=DIR        output directory (default target/peers/<UTC time>)
#   TIMEOUT=S      limit for each program run (default 300 s)
#   INSTALL=0      do not apt-get install missing packages
#   NO_GLOO=1      leave Gloo out
set -euo pipefail

script_started=$(date +%s)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

QUICK=${QUICK:-0}
for arg in "$@"; do
    case $arg in
    --quick) QUICK=1 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "run.sh: unknown argument $arg (try --help)" >&2
        exit 2
        ;;
    esac
done
if [[ $QUICK == 1 ]]; then
    RUNS=${RUNS:-3}
    RANKS=${RANKS:-2}
    FLOATS=${FLOATS:-1024 1048576}
else
    RUNS=${RUNS:-7}
    RANKS=${RANKS:-2 4 8}
    FLOATS=${FLOATS:-1024 4096 16384 65536 262144 1048576 4194304 16777216}
fi
read -r -a FLOATS <<<"$FLOATS"
for v in "${FLOATS[@]}" $RANKS $RUNS; do
    if ! [[ $v =~ ^[1-9][0-9]*$ ]]; then
        echo "run.sh: FLOATS, RANKS and RUNS take positive whole numbers, not $v" >&2
        exit 2
    fi
done
for n in $RANKS; do
    if ((${#n} > 2 || n < 2 || n > 64)); then
        echo "run.sh: the model exchange takes 2 to 64 ranks, not $n" >&2
        exit 2
    fi
done
for f in "${FLOATS[@]}"; do
    if ((${#f} > 9 || f > (1 << 26))); then
        echo "run.sh: FLOATS takes sizes up to 2^26 (256 MiB), not $f" >&2
        exit 2
    fi
done
PIN=${PIN:-0}
TIMEOUT=${TIMEOUT:-300}
INSTALL=${INSTALL:-1}
NO_GLOO=${NO_GLOO:-0}
for v in PIN INSTALL NO_GLOO QUICK; do
    if ! [[ ${!v} =~ ^[01]$ ]]; then
        echo "run.sh: $v takes 0 or 1, not ${!v}" >&2
        exit 2
    fi
done
if ! [[ $TIMEOUT =~ ^[1-9][0-9]{0,5}$ ]]; then
    echo "run.sh: TIMEOUT takes whole seconds, not $TIMEOUT" >&2
    exit 2
fi
if [[ -z ${CPUS:-} ]]; then
    CPUS=$(taskset -pc $$ | sed 's/.*: *//')
fi
OUT=${OUT:-$root/target/peers/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT/bin"
OUT=$(cd "$OUT" && pwd)
log=$OUT/log
raw=$OUT/raw.jsonl
: >"$raw"
: >"$log"

say() { echo "run.sh: $*" >&2; }

# --- 1. packages --------------------------------------------------------------
have_mpi() { command -v mpicc >/dev/null && command -v mpirun >/dev/null; }
have_gloo() { [[ -f /usr/include/gloo/allreduce.h ]]; }
if ! have_mpi || { [[ $NO_GLOO != 1 ]] && ! have_gloo; }; then
    if [[ $INSTALL == 1 ]]; then
        pkgs=(openmpi-bin libopenmpi-dev)
        if [[ $NO_GLOO != 1 ]] && apt-cache show libgloo-dev >/dev/null 2>&1; then
            pkgs+=(libgloo-dev)
        fi
        sudo=()
        [[ $(id -u) == 0 ]] || sudo=(sudo)
        say "installing ${pkgs[*]}"
        timeout 900 "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y --no-install-recommends "${pkgs[@]}" >>"$log" 2>&1 ||
            say "apt-get install failed (see $log)"
    fi
fi
if ! have_mpi; then
    say "Open MPI is missing (apt-get install openmpi-bin libopenmpi-dev)"
    exit 1
fi
if [[ $NO_GLOO != 1 ]] && ! have_gloo; then
    say "Gloo is not installed (libgloo-dev): its column stays empty"
    NO_GLOO=1
fi

# --- 2. build -----------------------------------------------------------------
say "building malt and the peer programs"
target=${CARGO_TARGET_DIR:-$root/target}
(cd "$root" && timeout 1800 cargo build --release -p malt) >>"$log" 2>&1 || {
    say "cargo build failed (see $log)"
    exit 1
}
malt=$target/release/malt
bin=$OUT/bin
cflags=(-O2 -Wall -Wextra)
timeout 300 mpicc "${cflags[@]}" -o "$bin/mpi_bench" "$here/mpi_bench.c" >>"$log" 2>&1
timeout 300 cc "${cflags[@]}" -o "$bin/memcpy_bench" "$here/memcpy_bench.c" >>"$log" 2>&1
if [[ $NO_GLOO != 1 ]]; then
    timeout 600 c++ "${cflags[@]}" -std=c++17 -o "$bin/gloo_bench" "$here/gloo_bench.cc" \
        -lgloo -lpthread >>"$log" 2>&1 || {
        say "building the Gloo program failed (see $log): its column stays empty"
        NO_GLOO=1
    }
fi

# --- 3. plans: the same work for every system ----------------------------------
# Writes: clamp(1 GiB / size, 10, 20000) per size. Exchange rounds:
# clamp(64 Mi / floats, 10, 2000 / ranks), so that the slowest system (Gloo
# over TCP, about 20 ms per round with 8 ranks on 2 CPUs) stays within
# minutes at the small sizes.
clamp() { local v=$1 lo=$2 hi=$3; ((v < lo)) && v=$lo; ((v > hi)) && v=$hi; echo "$v"; }
write_plan=""
for f in "${FLOATS[@]}"; do
    bytes=$((f * 4))
    write_plan+="${write_plan:+,}$bytes:$(clamp $(((1 << 30) / bytes)) 10 20000)"
done
exchange_plan() {
    local n=$1 f plan=""
    for f in "${FLOATS[@]}"; do
        plan+="${plan:+,}$f:$(clamp $(((64 << 20) / f)) 10 $((2000 / n)))"
    done
    echo "$plan"
}
echo "write plan (bytes:updates) $write_plan" >>"$log"
for n in $RANKS; do
    echo "exchange plan, $n ranks (floats:rounds) $(exchange_plan "$n")" >>"$log"
done

# --- 4. runs ------------------------------------------------------------------
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1
export PEERS_PIN=$PIN
pin_flag=()
[[ $PIN == 1 ]] && pin_flag=(--pin)
on_cpus=(taskset -c "$CPUS")

mpi() {
    local n=$1
    shift
    timeout "$TIMEOUT" "${on_cpus[@]}" mpirun --allow-run-as-root --oversubscribe \
        --bind-to none -np "$n" "$bin/mpi_bench" "$@"
}

gloo() {
    local n=$1 plan=$2 store rc=0 pids=() r
    store=$(mktemp -d "$OUT/gloo-store.XXXXXX")
    for ((r = 0; r < n; r++)); do
        timeout "$TIMEOUT" "${on_cpus[@]}" "$bin/gloo_bench" "$r" "$n" "$store" "$plan" \
            >"$store/out.$r" &
        pids+=($!)
    done
    for r in "${pids[@]}"; do wait "$r" || rc=1; done
    cat "$store/out.0"
    rm -rf "$store"
    return $rc
}

# One measurement: runs the command, tags its JSON lines, keeps its stderr.
measure() {
    local run=$1 system=$2 op=$3
    shift 3
    local tmp=$OUT/step.out t0=$SECONDS
    echo "== run $run $system $op: $*" >>"$log"
    if "$@" >"$tmp" 2>>"$log"; then
        awk -v pre="{\"run\":$run,\"system\":\"$system\",\"op\":\"$op\",\"data\":" \
            '/^\{/ { print pre $0 "}" }' "$tmp" >>"$raw"
    else
        say "run $run: $system $op failed (see $log)"
        cat "$tmp" >>"$log"
    fi
    echo "-- $((SECONDS - t0)) s" >>"$log"
}

write_step() {
    local run=$1 system=$2
    case $system in
    malt) measure "$run" malt write timeout "$TIMEOUT" "${on_cpus[@]}" "$malt" bench write \
        --transport shm --json --throughput-only --plan "$write_plan" "${pin_flag[@]}" ;;
    mpi_put) measure "$run" mpi_put write mpi 2 put "$write_plan" ;;
    mpi_put_create) measure "$run" mpi_put_create write mpi 2 put "$write_plan" create ;;
    memcpy) measure "$run" memcpy write timeout "$TIMEOUT" "${on_cpus[@]}" \
        "$bin/memcpy_bench" "$write_plan" 1 ;;
    memcpy_two_slot) measure "$run" memcpy_two_slot write timeout "$TIMEOUT" "${on_cpus[@]}" \
        "$bin/memcpy_bench" "$write_plan" 2 ;;
    esac
}

exchange_step() {
    local run=$1 system=$2 n=$3 plan
    plan=$(exchange_plan "$n")
    case $system in
    malt_direct | malt_allreduce)
        measure "$run" "$system" exchange timeout "$TIMEOUT" "${on_cpus[@]}" "$malt" bench gather \
            --ranks "$n" --transport shm --graph all --sync bsp --schedule "${system#malt_}" \
            --json --plan "$plan" "${pin_flag[@]}"
        ;;
    mpi) measure "$run" mpi exchange mpi "$n" allreduce "$plan" ;;
    gloo) measure "$run" gloo exchange gloo "$n" "$plan" ;;
    esac
}

# Busy CPU seconds of the whole machine (steal included: the host took it).
hz=$(getconf CLK_TCK)
machine_busy() { awk -v hz="$hz" '/^cpu / { printf "%.3f", ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat; }
# CPU seconds of this shell's finished children (all the benchmark programs),
# into $own. `times` must run in this shell, not in a $(...) subshell.
own_cpu() {
    times >"$OUT/times.txt"
    own=$(awk 'NR == 2 {
        n = split($0, t, " "); s = 0
        for (i = 1; i <= n; i++) { split(t[i], a, "m"); s += a[1] * 60 + a[2] }
        printf "%.3f", s }' "$OUT/times.txt")
}
now() { date +%s.%N; }

# Rotates a list by k: every system goes first in some run.
rotate() {
    local k=$1
    shift
    local a=("$@") n=$# i
    for ((i = 0; i < n; i++)); do echo "${a[(i + k) % n]}"; done
}

write_systems=(malt mpi_put mpi_put_create memcpy memcpy_two_slot)
exchange_systems=(malt_direct malt_allreduce mpi)
[[ $NO_GLOO != 1 ]] && exchange_systems+=(gloo)
started=$(date +%s)
for ((run = 1; run <= RUNS; run++)); do
    load=$(cut -d' ' -f1 /proc/loadavg)
    say "run $run of $RUNS (load $load, $(($(date +%s) - started)) s so far)"
    own_cpu
    busy0=$(machine_busy) own0=$own t0=$(now)
    for s in $(rotate $((run - 1)) "${write_systems[@]}"); do
        write_step "$run" "$s"
    done
    for n in $RANKS; do
        for s in $(rotate $((run - 1)) "${exchange_systems[@]}"); do
            exchange_step "$run" "$s" "$n"
        done
    done
    # Cores other processes took while this run measured.
    own_cpu
    others=$(awk -v b="$(machine_busy)" -v b0="$busy0" -v o="$own" -v o0="$own0" \
        -v t="$(now)" -v t0="$t0" 'BEGIN { x = ((b - b0) - (o - o0)) / (t - t0);
            printf "%.3f", x < 0 ? 0 : x }')
    echo "{\"run\":$run,\"system\":\"machine\",\"op\":\"load\",\"data\":{\"loadavg1\":$load,\"others_cores\":$others}}" >>"$raw"
done
rm -f "$OUT/step.out" "$OUT/times.txt"
finished=$(date +%s)
say "measured in $((finished - started)) s; results in $OUT"
# The run time, for the report: install and build, measurement, both.
echo "{\"run\":0,\"system\":\"machine\",\"op\":\"time\",\"data\":{\"build_secs\":$((started - script_started)),\"measure_secs\":$((finished - started)),\"total_secs\":$((finished - script_started))}}" >>"$raw"

# --- 5. report ----------------------------------------------------------------
model=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
hyper=$(lscpu | sed -n 's/^Hypervisor vendor: *//p' | head -1)
mem=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
os=$(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release 2>/dev/null || true)
ver() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo "?"; }
placement="every rank of every system on CPUs $CPUS, threads placed by the scheduler"
[[ $PIN == 1 ]] && placement="rank r of every system pinned to CPU (r mod k) of $CPUS"
machine="$(nproc) CPUs of an ${model:-unknown CPU}${hyper:+ ($hyper guest)}, $mem, \
$(uname -sr), ${os:-unknown OS}; Open MPI $(ver libopenmpi3), Gloo $(ver libgloo0); $placement"
quick_flag=()
[[ $QUICK == 1 ]] && quick_flag=(--quick)
timeout 300 "$malt" bench report --input "$raw" --out "$OUT" --date "$(date -u +%F)" \
    --machine "$machine" "${quick_flag[@]}" >"$OUT/summary.json" 2>>"$log" || {
    say "the report failed (see $log)"
    exit 1
}
say "done in $(($(date +%s) - script_started)) s (install and build $((started - script_started)) s, \
measurement $((finished - started)) s, report $(($(date +%s) - finished)) s)"
cat "$OUT/report.md"
tail -n 1 "$OUT/summary.json"
