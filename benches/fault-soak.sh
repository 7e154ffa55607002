#!/usr/bin/env bash
# Fault soak: TRIALS random kills and stops (default 50) of 1 or 2 of 4 ranks
# training an SVM under `malt launch --min-ranks 2|3`, on shm and tcp. One
# JSON line per trial, then a summary line; exits 1 when any trial hung,
# leaked a file or a process, exited with the wrong status, or trained to a
# test error more than 1 point from the fault-free run. Settings (TRIALS,
# ROWS, EPOCHS, T, SEED): see benches/fault_soak.py.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p malt
exec python3 benches/fault_soak.py
