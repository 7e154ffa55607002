#!/usr/bin/env bash
# What malt costs the legacy C++ program on one rank: apps/legacy-cpp's
# svm_sgd_malt (its weights and bias wrapped in place, a scatter and a gather
# every --cb examples) run as a one-rank job, against the plain svm_sgd on
# the same data and settings. The target: at most 3% more time.
#
# Runs PAIRS interleaved pairs (plain, then wrapped), each a whole process
# (reading the file, calibrating, training, malt_init and malt_finalize
# included), and prints every pair's wall time, CPU time (user + system) and
# the program's own training-loop seconds, for each the median ratio
# wrapped/plain with the smallest and largest pair ratio, and /proc/loadavg
# before and after. Where valgrind is installed, also the ratio of the
# instructions callgrind counts (every thread of the process) on a smaller
# set: a measure the machine's noise does not move.
# Both programs must print the same final objective (one rank averages
# nothing, so they compute the same thing).
#
#   benches/legacy-overhead.sh [--plain EXE --wrapped EXE] [--launch]
#
# Without --plain/--wrapped it builds both with apps/legacy-cpp/Makefile
# against the libmalt that pkg-config finds, or else builds libmalt (cargo
# build --release) and installs it into a scratch prefix with capi/install.sh.
# The wrapped program runs with the environment of a one-rank job
# (MALT_RANK=0, MALT_WORLD_SIZE=1, a free-looking MALT_MASTER_PORT); with
# --launch, under `malt launch -n 1` instead (the launcher's start-up counted).
#
# Environment: PAIRS (default 9; 3 with CI=true), CI=true (3 pairs on a small
# set, about 10 s), MALT (the malt binary; default target/release/malt),
# MAX_RATIO (e.g. 1.03: exit 1 when the median ratio is above it; by default
# the numbers are only reported), CALLGRIND=0 (skip callgrind).
# Run it on a quiet machine: on 2 cores, a build next to it moves every time.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

usage() { echo "usage: $0 [--plain EXE --wrapped EXE] [--launch]" >&2; exit 2; }
plain='' wrapped='' launch=0
while (($#)); do
    case $1 in
    --plain) (($# > 1)) || usage; plain=$2; shift 2 ;;
    --wrapped) (($# > 1)) || usage; wrapped=$2; shift 2 ;;
    --launch) launch=1; shift ;;
    *) usage ;;
    esac
done
[[ -z $plain && -z $wrapped || -n $plain && -n $wrapped ]] || usage

ci=0
[[ ${CI:-} == true ]] && ci=1
if ((ci)); then
    pairs=${PAIRS:-3}
    data_args=(--rows 20000 --features 5000 --nnz 20 --seed 7)
    settings=(--epochs 20 --cb 2000)
    cg_settings=(--epochs 2 --cb 2000)
else
    pairs=${PAIRS:-9}
    # About 1.5 s a run on a 2-vCPU VM: 27 MB to read, 15 M steps.
    data_args=(--rows 100000 --features 20000 --nnz 20 --seed 7)
    settings=(--epochs 150 --cb 2000)
    cg_settings=(--epochs 3 --cb 2000)
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/legacy-overhead.XXXXXX")
trap 'rm -rf "$work"' EXIT

target=${CARGO_TARGET_DIR:-}
if [[ -z $target ]]; then
    target=$(cargo metadata --format-version 1 --no-deps |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
fi
[[ $target == /* ]] || target=$root/$target
malt=${MALT:-$target/release/malt}

if [[ -z $plain ]]; then
    if ! pkg-config --exists malt 2>/dev/null || [[ ! -x $malt ]]; then
        echo "building libmalt and malt (release)"
        timeout 3000 cargo build --release -q -p malt-capi -p malt
        if ! pkg-config --exists malt 2>/dev/null; then
            timeout 300 bash capi/install.sh --no-build "$work/prefix" >/dev/null
            export PKG_CONFIG_PATH=$work/prefix/lib/pkgconfig
        fi
    fi
    timeout 600 make -s -C apps/legacy-cpp O="$work" CXX="${CXX:-g++}" CXXFLAGS="-O2 -g -Wall -Wextra -Werror"
    plain=$work/svm_sgd wrapped=$work/svm_sgd_malt
fi
[[ -x $plain && -x $wrapped ]] || { echo "not executable: $plain or $wrapped" >&2; exit 1; }
[[ -x $malt ]] || { echo "$malt is missing: cargo build --release -p malt, or set MALT" >&2; exit 1; }

timeout 300 "$malt" data synth-sparse "${data_args[@]}" --out "$work/train.libsvm" >/dev/null
timeout 300 "$malt" data synth-sparse --rows 20000 --features 5000 --nnz 20 --seed 7 \
    --out "$work/small.libsvm" >/dev/null

# One rank of its own: a port no other job of this host is likely to use
# (the default, 29517, may be a concurrent job's).
one_rank() {
    if ((launch)); then
        timeout 600 "$malt" launch -n 1 --transport shm --timeout 60 -- "$@"
    else
        MALT_RANK=0 MALT_WORLD_SIZE=1 MALT_LOCAL_RANK=0 MALT_LOCAL_WORLD_SIZE=1 \
            MALT_MASTER_ADDR=127.0.0.1 MALT_MASTER_PORT=$((30000 + RANDOM % 30000)) \
            MALT_TRANSPORT=shm MALT_TIMEOUT=60 timeout 600 "$@"
    fi
}

# The plain program, under the same `timeout` as the wrapped one.
alone() { timeout 600 "$@"; }

# run NAME PAIR CMD...: appends "pair wall_s train_s objective cpu_s" to
# $work/NAME (cpu_s: user + system time of the process and its children).
run() {
    local name=$1 pair=$2 TIMEFORMAT='%3R %3U %3S' final real user sys
    shift 2
    { time "$@" >"$work/out" 2>"$work/err"; } 2>"$work/time" ||
        { cat "$work/err" >&2; echo "$name: failed" >&2; exit 1; }
    # The launcher prefixes each line with the rank.
    final=$(sed -n 's/^\(\[0\] \)\{0,1\}\(final objective .*\)/\2/p' "$work/out")
    [[ -n $final ]] || { cat "$work/out" "$work/err" >&2; echo "$name: no final objective" >&2; exit 1; }
    read -r real user sys <"$work/time"
    awk -v p="$pair" -v r="$real" -v c="$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" \
        '{ printf "%d %s %s %s %s\n", p, r, $7, $3, c }' <<<"$final" >>"$work/$name"
}

echo "legacy C++ overhead at one rank: $plain vs $wrapped$( ((launch)) && echo ' (malt launch -n 1)')"
echo "data: malt data synth-sparse ${data_args[*]}; settings: ${settings[*]}; $pairs pairs$( ((ci)) && echo ' (CI)')"
echo "host: $(nproc) CPUs, $(uname -r)"
load_before=$(cat /proc/loadavg)
echo "load before: $load_before"
awk '{ exit !($1 > 1.5) }' /proc/loadavg &&
    echo "warning: the 1-minute load is above 1.5: the times below are noisy" >&2
# A warm-up of each (page cache, CPU frequency), not counted.
run warm 0 alone "$plain" "$work/train.libsvm" "${settings[@]}"
run warm 0 one_rank "$wrapped" "$work/train.libsvm" "${settings[@]}"
for ((i = 1; i <= pairs; i++)); do
    run plain "$i" alone "$plain" "$work/train.libsvm" "${settings[@]}"
    run wrapped "$i" one_rank "$wrapped" "$work/train.libsvm" "${settings[@]}"
done
load_after=$(cat /proc/loadavg)

verdict=0
python3 - "$work" "${MAX_RATIO:-}" <<'PY' || verdict=$?
import statistics, sys
work, max_ratio = sys.argv[1], sys.argv[2]
def rows(name):
    return [l.split() for l in open(f"{work}/{name}") if l.strip()]
plain, wrapped = rows("plain"), rows("wrapped")
objs = {r[3] for r in plain + wrapped}
print("pair | wall s: plain wrapped ratio | cpu s: plain wrapped ratio | training loop s: plain wrapped ratio")
ratios = {"wall": [], "cpu": [], "train": []}
def ratio(key, a, b):
    r = float(b) / float(a) if float(a) > 0 else float("nan")
    ratios[key].append(r)
    return f"{float(a):6.3f} {float(b):6.3f} {r:5.3f}"
for p, w in zip(plain, wrapped):
    print(f"{p[0]:>4} | {ratio('wall', p[1], w[1])} | {ratio('cpu', p[4], w[4])} | {ratio('train', p[2], w[2])}")
for key, what in (("wall", "wall time"), ("cpu", "CPU time"), ("train", "training loop")):
    r = ratios[key]
    print(f"{what}, wrapped/plain: median {statistics.median(r):.3f} (pairs: min {min(r):.3f}, max {max(r):.3f})")
m = statistics.median(ratios["wall"])
print(f"median wall time: plain {statistics.median(float(p[1]) for p in plain):.3f} s, "
      f"wrapped {statistics.median(float(w[1]) for w in wrapped):.3f} s")
if len(objs) != 1:
    print(f"the final objectives differ: {sorted(objs)}")
    sys.exit(3)
print(f"final objective: {objs.pop()} (both)")
if max_ratio and m > float(max_ratio):
    print(f"the median ratio {m:.3f} is above {max_ratio}")
    sys.exit(1)
PY
echo "load after: $load_after"

if [[ ${CALLGRIND:-1} != 0 ]] && command -v valgrind >/dev/null; then
    # Instructions of every thread: nearly deterministic (malt's idle threads
    # wake on timers; from run to run the count moves by a few hundredths of
    # a percent).
    irs() {
        local log=$work/cg.log
        "$@" >/dev/null 2>"$log" || { cat "$log" >&2; return 1; }
        sed -n 's/^\(\[0\] \)\{0,1\}==[0-9]*== Collected : \([0-9]*\).*/\2/p' "$log" | head -1
    }
    cg=(timeout 600 valgrind --tool=callgrind --callgrind-out-file="$work/cg.out")
    a=$(irs alone "${cg[@]}" "$plain" "$work/small.libsvm" "${cg_settings[@]}")
    b=$(irs one_rank "${cg[@]}" "$wrapped" "$work/small.libsvm" "${cg_settings[@]}")
    awk -v a="$a" -v b="$b" -v s="${cg_settings[*]}" 'BEGIN {
        printf "callgrind (20000 rows, 5000 features, %s): plain %d, wrapped %d instructions, ratio %.4f\n", s, a, b, b / a
    }'
fi
exit "$verdict"
