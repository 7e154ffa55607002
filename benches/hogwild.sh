#!/usr/bin/env bash
# SGD threads within a rank (Hogwild on a stratified schedule, see
# apps/src/train/stratified.rs): `malt train mf --threads 2` against
# `--threads 1` on one rank, on the built-in synthetic ratings (what `malt train mf` trains
# on without --data: 3,000,000 training ratings of 30,000 users and 3,000
# items, rank 10, 20 epochs), in PAIRS interleaved pairs (default 5; the
# order within a pair alternates). Each iteration also runs 2 ranks x 1
# thread and 2 ranks x 2 threads (more threads than cores on a 2-core
# machine).
#
# Prints, for every run, the ratings per second (the summary's
# `examples_per_s`: ratings trained on per second of training, evaluation
# passes excluded, summed over the ranks), the final training RMSE and the
# test RMSE; then per configuration the median with its range, the median
# ratio of each pair (threads 2 / threads 1, one rank) with min and max, the
# RMSE difference, and /proc/loadavg before and after.
#
#   benches/hogwild.sh [MALT]      (default: target/release/malt)
#   BASELINE=OTHER_MALT benches/hogwild.sh
#                                  also runs 1 rank x 1 thread with OTHER_MALT
#                                  in every iteration (a build before a change)
#                                  and prints the per-pair ratio MALT / OTHER
#   CI=true benches/hogwild.sh     one iteration on a small set (3 epochs)
set -euo pipefail
cd "$(dirname "$0")/.."
malt=${1:-target/release/malt}
if [[ ! -x $malt ]]; then
    echo "benches/hogwild.sh: no $malt (cargo build --release -p malt)" >&2
    exit 2
fi
if [[ ${CI:-} == true ]]; then
    pairs=1 epochs=3 limit=120
    synth=(--synth-ratings 200000 --synth-users 5000 --synth-items 500)
else
    pairs=${PAIRS:-5} epochs=${EPOCHS:-20} limit=600
    synth=()
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "load before: $(cat /proc/loadavg)"
# The data set, generated once (one short epoch), then given to every run.
timeout "$limit" "$malt" train mf "${synth[@]}" --epochs 1 --out "$work/data" --quiet --no-plot
data=(--data "$work/data/synth-ratings/train.ratings" --test "$work/data/synth-ratings/test.ratings")

run() { # ranks threads [tag binary]
    local tag=${3:-r$1t$2} bin=${4:-$malt} line
    line=$(timeout "$limit" "$bin" train mf "${data[@]}" --epochs "$epochs" --ranks "$1" \
        --threads "$2" --out "$work/$tag" --json --no-plot | grep '^{' | tail -n 1)
    echo "$line" >>"$work/$tag.jsonl"
    python3 - "$line" "$1" "$2" <<'PY'
import json, sys
s = json.loads(sys.argv[1])
print(f"  {sys.argv[2]} ranks x {sys.argv[3]} threads: {s['examples_per_s'] / 1e6:.2f} M ratings/s,"
      f" {s['seconds']:.2f} s, training RMSE {s['final_loss']:.5f}, test RMSE {s['test_rmse']:.5f}")
PY
}
for ((i = 0; i < pairs; i++)); do
    echo "iteration $((i + 1)) of $pairs (load $(cut -d' ' -f1-3 /proc/loadavg))"
    if ((i % 2 == 0)); then
        run 1 1; run 1 2; run 2 1; run 2 2
        if [[ -n ${BASELINE:-} ]]; then run 1 1 base "$BASELINE"; fi
    else
        if [[ -n ${BASELINE:-} ]]; then run 1 1 base "$BASELINE"; fi
        run 1 2; run 1 1; run 2 2; run 2 1
    fi
done
echo "load after: $(cat /proc/loadavg)"

python3 - "$work" <<'PY'
import json, statistics, sys
d = sys.argv[1]
def runs(tag):
    return [json.loads(l) for l in open(f"{d}/{tag}.jsonl") if l.strip()]
def rng(v, f):
    return f"{f(statistics.median(v))} ({f(min(v))} to {f(max(v))})"
mr = lambda x: f"{x / 1e6:.2f}"
r5 = lambda x: f"{x:.4f}"
print("\n| ranks x threads | M ratings/s, median (range) | training RMSE | test RMSE |")
print("|---|---|---|---|")
for tag, name in [("r1t1", "1 x 1"), ("r1t2", "1 x 2"), ("r2t1", "2 x 1"), ("r2t2", "2 x 2")]:
    s = runs(tag)
    print(f"| {name} | {rng([x['examples_per_s'] for x in s], mr)} "
          f"| {rng([x['final_loss'] for x in s], r5)} | {rng([x['test_rmse'] for x in s], r5)} |")
one, two = runs("r1t1"), runs("r1t2")
ratios = [b["examples_per_s"] / a["examples_per_s"] for a, b in zip(one, two)]
print(f"\none rank, threads 2 / threads 1, ratings/s per pair: "
      + ", ".join(f"{r:.3f}" for r in ratios))
print(f"median ratio {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")
for key, what in [("final_loss", "training"), ("test_rmse", "test")]:
    a = statistics.median(x[key] for x in one)
    b = statistics.median(x[key] for x in two)
    print(f"{what} RMSE, median: threads 1 {a:.5f}, threads 2 {b:.5f} ({100 * (b - a) / a:+.2f}%)")
same = all(abs(b[k] - a[k]) <= 0.01 * a[k] for a, b in zip(one, two) for k in ("final_loss", "test_rmse"))
fast = statistics.median(ratios) >= 1.6
print(f"target (median ratio >= 1.6, every pair's RMSEs within 1%): {'met' if fast and same else 'not met'}")
try:
    base = runs("base")
except FileNotFoundError:
    base = []
if base:
    r = [a["examples_per_s"] / b["examples_per_s"] for a, b in zip(one, base)]
    print("one rank x 1 thread, this build / baseline, ratings/s per pair: "
          + ", ".join(f"{x:.3f}" for x in r))
    print(f"median {statistics.median(r):.3f} (min {min(r):.3f}, max {max(r):.3f});"
          f" baseline {statistics.median(x['examples_per_s'] for x in base) / 1e6:.2f} M ratings/s,"
          f" training RMSE {statistics.median(x['final_loss'] for x in base):.5f}")
PY
