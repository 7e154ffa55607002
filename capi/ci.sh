#!/usr/bin/env bash
# CI for malt's C API (run from anywhere; as root it installs what is
# missing from Debian packages):
#
#  1. builds libmalt and the `malt` binary in release and checks
#     include/malt.h is current;
#  2. capi/packaging.sh: installs the C API into a scratch prefix (versioned
#     soname), checks pkg-config, compiles malt.h cleanly under C89, C11,
#     C++98 and clang C99, runs the README's C quick start as written
#     (shared and static);
#  3. C programs under `malt launch`: vectors over the program's own memory
#     at 2 and 3 ranks (capi/tests/c/wrap.c), mismatched call counts, gather
#     before scatter and a late rank (capi/tests/c/mismatch.c);
#  4. builds apps/legacy-cpp with its Makefile and g++, checks that the
#     data-parallel version changes at most 20 lines, runs it with
#     `malt launch -n 2` on shm and checks that its final objective is within
#     2% of `malt train svm --ranks 2` on the same data and settings;
#  5. runs the misuse program under AddressSanitizer and under valgrind, and
#     the two-rank exchange and three-rank fault programs under
#     AddressSanitizer: all clean.
#
# Every wait is bounded. Environment: CARGO_TARGET_DIR (honoured),
# MALT_CAPI_CI_KEEP=1 keeps the scratch directory.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CARGO_TERM_COLOR=never

checks_name=capi
# shellcheck source=capi/steps.sh
source "$root/capi/steps.sh"

step "tools"
need=()
command -v g++ >/dev/null || need+=(g++)
command -v make >/dev/null || need+=(make)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v valgrind >/dev/null || need+=(valgrind)
install_packages "${need[@]}"
cc=${CC:-cc}
command -v "$cc" >/dev/null || cc=gcc
ok "g++, make, pkg-config, valgrind, $cc"

step "build (release)"
timeout 3000 cargo build --release -p malt-capi -p malt
target=${CARGO_TARGET_DIR:-}
if [[ -z $target ]]; then
    target=$(cargo metadata --format-version 1 --no-deps |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
fi
[[ $target == /* ]] || target=$root/$target
malt=$target/release/malt
[[ -x $malt ]] || fail "$malt was not built"
timeout 1200 cargo test --release -p malt-capi --test header -q ||
    fail "include/malt.h is stale"
ok "libmalt and malt built; include/malt.h is current"

work=$(mktemp -d "${TMPDIR:-/tmp}/malt-capi-ci.XXXXXX")
if [[ -z ${MALT_CAPI_CI_KEEP:-} ]]; then
    trap 'rm -rf "$work"' EXIT
else
    echo "scratch directory: $work"
fi

step "packaging: install, pkg-config, header under four compilers, quick start (shared and static)"
timeout 2400 bash capi/packaging.sh "$malt" "$work/packaging" || fail "capi/packaging.sh"
prefix=$work/packaging/prefix
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
libdir=$(pkg-config --variable=libdir malt)
readme=README.md
ok "capi/packaging.sh passed"

# Runs a job of $1 ranks of the remaining command, bounded.
launch() {
    local n=$1
    shift
    timeout 300 "$malt" launch -n "$n" --transport shm --timeout 60 -- "$@"
}

# Compiles capi/tests/c/$1.c against the installed library as $work/$1.
build_c() {
    # shellcheck disable=SC2046
    "$cc" -std=c11 -Wall -Wextra -Werror -g -o "$work/$1" "capi/tests/c/$1.c" \
        $(pkg-config --cflags --libs malt) -lm -Wl,-rpath,"$libdir"
}

# Checks that each of $1 ranks printed "$2 rank R of $1: ... checks, 0 failed".
all_passed() {
    local n=$1 tag=$2 out=$3 r
    for ((r = 0; r < n; r++)); do
        grep -q "$tag rank $r of $n: [0-9]* checks, 0 failed" <<<"$out" || return 1
    done
}

step "vectors over the program's own memory (wrap), 2 and 3 ranks"
build_c wrap
for n in 2 3; do
    out=$(launch "$n" "$work/wrap" 2>&1) || fail "wrap on $n ranks: $out"
    all_passed "$n" wrap "$out" || fail "wrap on $n ranks: $out"
done
ok "wrapped float and double vectors average exactly in the program's arrays; freed names are reused; zero length, NULL, misaligned and overlapping regions are rejected"

step "mismatched calls, 2 and 3 ranks; a late rank, 3 ranks"
build_c mismatch
for n in 2 3; do
    # The job ends with the mismatch, so malt launch exits non-zero: the
    # checks are what each rank printed.
    out=$(timeout 120 "$malt" launch -n "$n" --transport shm -- "$work/mismatch" counts 2>&1) || true
    all_passed "$n" "mismatch counts" "$out" || fail "unequal scatter counts on $n ranks: $out"
    grep "failed after" <<<"$out"
done
out=$(MALT_TIMEOUT=1 timeout 120 "$malt" launch -n 3 --transport shm -- "$work/mismatch" late 2>&1) || true
all_passed 3 "mismatch late" "$out" || fail "a late rank: $out"
grep "mismatch rank" <<<"$out"
ok "gather before scatter is MALT_ERR_CALL_ORDER on every rank; unequal scatter counts fail every rank with MALT_ERR_MISMATCH within 1 s naming both ranks; a late rank is not named missing to itself"

step "legacy C++ program"
timeout 600 make -s -C apps/legacy-cpp O="$work" CXX=g++ CXXFLAGS="-O2 -g -Wall -Wextra -Werror"
changed=$(diff -u apps/legacy-cpp/svm_sgd.cpp apps/legacy-cpp/svm_sgd_malt.cpp | grep -c '^+[^+]' || true)
removed=$(diff -u apps/legacy-cpp/svm_sgd.cpp apps/legacy-cpp/svm_sgd_malt.cpp | grep -c '^-[^-]' || true)
lines=$(wc -l <apps/legacy-cpp/svm_sgd.cpp)
((changed <= 20)) || fail "the data-parallel version adds or changes $changed lines (at most 20)"
awk '/^```diff$/ { inside = 1; next } inside && /^```$/ { exit } inside { print }' "$readme" \
    >"$work/readme.diff"
make -s -C apps/legacy-cpp diff >"$work/actual.diff"
cmp -s "$work/readme.diff" "$work/actual.diff" ||
    fail "the diff shown in $readme is not the diff of apps/legacy-cpp (make -C apps/legacy-cpp diff)"
ok "svm_sgd ($lines lines) and svm_sgd_malt built; the parallel version adds or changes $changed lines ($removed removed), as $readme shows"

step "C++ against malt train svm, 2 ranks on shm"
timeout 300 "$malt" data synth-sparse --rows 40000 --features 5000 --nnz 20 --seed 3 \
    --out "$work/train.libsvm" >/dev/null
settings=(--epochs 5 --cb 2000)
t0=$(date +%s.%N)
rust=$(timeout 600 "$malt" train svm --ranks 2 --transport shm --timeout 60 \
    --data "$work/train.libsvm" "${settings[@]}" --json --quiet --no-plot --out "$work/rust") ||
    fail "malt train svm: $rust"
t1=$(date +%s.%N)
cpp=$(launch 2 "$work/svm_sgd_malt" "$work/train.libsvm" "${settings[@]}") ||
    fail "svm_sgd_malt on 2 ranks: $cpp"
t2=$(date +%s.%N)
single=$(timeout 300 "$work/svm_sgd" "$work/train.libsvm" "${settings[@]}") || fail "svm_sgd: $single"
echo "$cpp"
rust_loss=$(sed -n 's/.*"final_loss":\([-0-9.eE+]*\).*/\1/p' <<<"$rust")
cpp_loss=$(sed -n 's/^\[0\] final objective \([-0-9.eE+]*\) .*/\1/p' <<<"$cpp")
cpp_loss1=$(sed -n 's/^\[1\] final objective \([-0-9.eE+]*\) .*/\1/p' <<<"$cpp")
single_loss=$(sed -n 's/^final objective \([-0-9.eE+]*\) .*/\1/p' <<<"$single")
[[ -n $rust_loss && -n $cpp_loss && -n $single_loss ]] ||
    fail "missing objectives: rust '$rust_loss', c++ '$cpp_loss', single '$single_loss'"
[[ $cpp_loss == "$cpp_loss1" ]] || fail "the ranks disagree: $cpp_loss vs $cpp_loss1"
awk -v c="$cpp_loss" -v r="$rust_loss" -v s="$single_loss" \
    -v rs="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
    -v cs="$(awk -v a="$t1" -v b="$t2" 'BEGIN { print b - a }')" 'BEGIN {
        d = (c - r) / r; if (d < 0) d = -d
        printf "final objective: C++ 2 ranks %.6f, Rust 2 ranks %.6f (difference %.2f%%), C++ 1 rank %.6f\n", c, r, 100 * d, s
        printf "wall time: malt train svm %.2f s, malt launch svm_sgd_malt %.2f s\n", rs, cs
        exit !(d <= 0.02)
    }' || fail "the C++ objective is not within 2% of malt train svm"
ok "C++ on 2 ranks within 2% of malt train svm"

step "misuse under AddressSanitizer and valgrind"
asan=(-fsanitize=address -fno-omit-frame-pointer)
for prog in misuse exchange fault; do
    # shellcheck disable=SC2046
    "$cc" -std=c11 -Wall -Wextra -Werror -g "${asan[@]}" -o "$work/$prog-asan" \
        "capi/tests/c/$prog.c" $(pkg-config --cflags --libs malt) -lm -Wl,-rpath,"$libdir"
    # shellcheck disable=SC2046
    "$cc" -std=c11 -Wall -Wextra -Werror -g -o "$work/$prog" \
        "capi/tests/c/$prog.c" $(pkg-config --cflags --libs malt) -lm -Wl,-rpath,"$libdir"
done
export ASAN_OPTIONS=detect_leaks=1:exitcode=86
out=$(launch 1 "$work/misuse-asan" 2>&1) || fail "misuse under AddressSanitizer: $out"
grep -q 'AddressSanitizer' <<<"$out" && fail "AddressSanitizer reported: $out"
grep -q ' checks, 0 failed' <<<"$out" || fail "misuse: $out"
echo "$out"
ok "misuse: expected error codes, AddressSanitizer clean (leaks included)"
out=$(launch 2 "$work/exchange-asan" 2>&1) || fail "exchange under AddressSanitizer: $out"
grep -q 'AddressSanitizer' <<<"$out" && fail "AddressSanitizer reported: $out"
[[ $(grep -c ' checks, 0 failed' <<<"$out") == 2 ]] || fail "exchange: $out"
echo "$out"
ok "two-rank exchange: AddressSanitizer clean"
out=$(timeout 300 "$malt" launch -n 3 --min-ranks 2 --fail-timeout 5 --transport shm --timeout 60 \
    -- "$work/fault-asan" 2>&1) || fail "fault under AddressSanitizer: $out"
grep -q 'AddressSanitizer' <<<"$out" && fail "AddressSanitizer reported: $out"
[[ $(grep -c ' checks, 0 failed' <<<"$out") == 3 && $out == *"leaving abruptly"* ]] || fail "fault: $out"
echo "$out"
ok "a rank dies, the two others regroup, rejoin and go on: AddressSanitizer clean"
unset ASAN_OPTIONS
out=$(launch 1 valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
    --show-possibly-lost=no "$work/misuse" 2>&1) || fail "misuse under valgrind: $out"
grep -q ' checks, 0 failed' <<<"$out" || fail "misuse under valgrind: $out"
ok "misuse: valgrind clean"

finish
