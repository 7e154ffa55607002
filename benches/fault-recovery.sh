#!/usr/bin/env bash
# Fault recovery, measured: `malt launch -n 4 --min-ranks 3 -- malt train svm`
# with rank 2 SIGKILLed halfway, TRIALS times (default 10). Prints each
# trial's time from the kill to resumed training and the test errors with
# and without the fault, then the medians as one JSON line.
set -euo pipefail
cd "$(dirname "$0")/.."
trials=${TRIALS:-10}
cargo build --release -q -p malt --tests
lines=()
for i in $(seq 1 "$trials"); do
    line=$(cargo test --release -q -p malt --test faults svm_training_survives_a_rank_killed_halfway \
        -- --nocapture 2>/dev/null | sed -n 's/.*RECOVERY //p')
    echo "trial $i: $line"
    lines+=("$line")
done
printf '%s\n' "${lines[@]}" | python3 -c '
import json, statistics, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
med = lambda k: statistics.median(r[k] for r in rows)
print(json.dumps({
    "trials": len(rows),
    "kill_to_resume_s_median": round(med("kill_to_resume_s"), 4),
    "kill_to_resume_s_max": round(max(r["kill_to_resume_s"] for r in rows), 4),
    "test_error_clean_median": med("test_error_clean"),
    "test_error_faulty_median": med("test_error_faulty"),
}))'
