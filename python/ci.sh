#!/usr/bin/env bash
# CI for the Python package (run from anywhere; as root it installs what is
# missing from Debian packages):
#
#  1. Debian's Python pieces: venv, NumPy, pytest, torch 1.13 (CPU, Gloo),
#     OpenBLAS (without it torch runs on the reference BLAS, ten times
#     slower) and the Fashion-MNIST IDX files;
#  2. the README's install command, verbatim, in the repository root
#     (a virtual environment in .venv with the system's site packages);
#  3. the README's NumPy example under `malt launch -n 2`: the exact mean on
#     both ranks;
#  4. the pytest suites of python/tests (real processes under malt launch);
#  5. short forms of the Fashion-MNIST application (one epoch, malt, one
#     rank and DDP over Gloo, a goal every system reaches) and of the sync
#     overhead benchmark.
#
# Every wait is bounded. Environment: CARGO_TARGET_DIR (honoured).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CARGO_TERM_COLOR=never

checks_name=python
# shellcheck source=capi/steps.sh
source "$root/capi/steps.sh"

step "Debian packages"
py=/usr/bin/python3
need=()
for p in python3 python3-venv python3-numpy python3-pytest python3-torch libopenblas0-pthread \
    dataset-fashion-mnist; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
install_packages "${need[@]}"
ok "$("$py" --version), numpy $("$py" -c 'import numpy; print(numpy.__version__)'), torch $("$py" -c 'import torch; print(torch.__version__)')"

step "the malt launcher (release)"
timeout 3000 cargo build --release -p malt
target=${CARGO_TARGET_DIR:-$root/target}
[[ $target == /* ]] || target=$root/$target
export MALT_BIN=$target/release/malt
[[ -x $MALT_BIN ]] || fail "$MALT_BIN was not built"
ok "$MALT_BIN"

step "the README's install command"
install=$(grep -m1 -- '-m venv --system-site-packages .venv' README.md) ||
    fail "README.md shows no install command"
rm -rf .venv
timeout 2400 bash -c "$install" || fail "$install"
venv_py=$root/.venv/bin/python3
"$venv_py" -c "import malt, malt.torch; print('malt', malt.__version__, 'from', malt.__file__)"
ok "$install"

step "the README's NumPy example on 2 ranks"
example=$(awk '/^```console python-example$/ { inside = 1; next } inside && /^```$/ { exit } inside { print }' README.md)
[[ -n $example ]] || fail "README.md shows no Python example (a console block tagged python-example)"
cmd=$(sed -n 's/^\$ //p' <<<"$example")
want=$(grep -v '^\$ ' <<<"$example")
got=$(timeout 120 bash -c "${cmd/target\/release\/malt launch/$MALT_BIN launch}" 2>&1) ||
    fail "the example failed: $got"
[[ "$(sort <<<"$got")" == "$(sort <<<"$want")" ]] || fail "the example printed
$got
where the README shows
$want"
ok "$cmd"

step "pytest python/tests"
PATH=$root/.venv/bin:$PATH timeout 1200 "$venv_py" -m pytest -q python/tests
ok "python/tests passed"

step "Fashion-MNIST, short: one epoch of malt (2 ranks), one rank and DDP over Gloo"
out=$(mktemp -d "${TMPDIR:-/tmp}/malt-python-ci.XXXXXX")
trap 'rm -rf "$out"' EXIT
line=$(PATH=$root/.venv/bin:$PATH timeout 900 "$venv_py" apps/python/fashion_mnist.py --ranks 2 \
    --compare-single --compare-ddp --runs 1 --epochs 1 --eval-every 96 --goal 0.75 --out "$out/fm" |
    tail -1) || fail "fashion_mnist.py failed"
echo "$line"
for f in metrics.csv accuracy.svg; do
    [[ -s $out/fm/$f ]] || fail "fashion_mnist.py wrote no $f"
done
ok "all three systems trained and reached 75%"

step "sync overhead, short: malt.torch sync against a raw round, 1 M parameters, 2 ranks"
PATH=$root/.venv/bin:$PATH timeout 300 "$MALT_BIN" launch -n 2 --transport shm -- \
    "$venv_py" benches/python/sync_overhead.py --rounds 10 --repeat 3
ok "measured (the README has the full run)"
finish
