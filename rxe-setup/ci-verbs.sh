#!/bin/bash
# The verbs part of CI: installs the build and guest dependencies, builds
# malt and the RDMA tests with `--features verbs` (release; dstorm's own
# tests from the dstorm package, those that run the CLI from apps), and runs
# the guest suite in one soft-RoCE guest boot:
#
#   1. malt launch -n 4 --transport verbs -- malt check   (four "ok":true lines)
#   2. with MALT_TEST_TRANSPORTS=verbs: dstorm/tests/transport.rs (not its
#      shm-only torn-write race test, which runs on the host), then
#      tests/cli_check.rs (malt check, 2 to 4 ranks, 1 byte to 16 MiB)
#   3. tests/verbs_faults.rs, including the device-only tests
#   4. tests/faults.rs: a rank of 3 SIGKILLed, the survivors regroup on verbs;
#      tcp ranks in two network namespaces under netem (delay, loss), and
#      tcp on a loopback limited by tbf so that one update takes longer
#      than the failure timeout (nobody may be suspected)
#   5. apps/legacy-cpp through a libmalt built with verbs, 2 ranks, final
#      objective within 2% of malt train svm on the same data
#
# then, unless MALT_CI_TWO_GUESTS=0, the two-guest smoke test
# (two-guests.sh). Run from the repository root:
#
#   rxe-setup/ci-verbs.sh
#
# Uses CARGO_TARGET_DIR when set (else target/). The host needs Debian's
# apt-get (as root or with passwordless sudo) unless cmake, clang and
# libclang-dev are already installed. Exit status: 0 when everything
# passed; otherwise the first failing step's.
set -euo pipefail

prog=ci-verbs.sh
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
say() { printf '%s: %s\n' "$prog" "$*" >&2; }

# --------------------------------------------------- inside the guest
if [[ ${1:-} == --guest-suite ]]; then
    malt=$2 transport_tests=$3 check_tests=$4 fault_tests=$5 regroup_tests=$6 capi_dir=$7
    rust_loss=$8
    step() {
        local name=$1 t0=$SECONDS rc=0
        shift
        say "guest: $name"
        "$@" || rc=$?
        say "guest: $name: exit $rc after $((SECONDS - t0)) s"
        return "$rc"
    }
    # shellcheck disable=SC2317 # invoked through step
    check4() {
        local out ok
        out=$("$malt" launch -n 4 --transport verbs -- "$malt" check)
        printf '%s\n' "$out"
        ok=$(grep -c '"ok":true' <<<"$out" || true)
        ((ok == 4)) || {
            say "expected 4 \"ok\":true lines, got $ok"
            return 1
        }
    }
    step "malt check, 4 ranks" check4
    # The torn-write race test always runs on shm (it needs stores into
    # live memory) and already runs on the host; under TCG the race it
    # waits for may not happen within its 20 s.
    step "transport-generic tests on verbs" \
        env MALT_TEST_TRANSPORTS=verbs "$transport_tests" --test-threads=1 \
        --skip concurrent_writes_are_detected_as_torn_and_never_accepted
    step "byte-exact delivery on verbs (malt check)" \
        env MALT_TEST_TRANSPORTS=verbs "$check_tests" --test-threads=1
    step "verbs fault tests" "$fault_tests" --include-ignored --skip rank_ --test-threads=1
    step "regroup after a SIGKILL on verbs (3 ranks)" "$regroup_tests" --ignored \
        --exact verbs_sigkill_one_of_three_survivors_regroup --test-threads=1
    step "tcp between network namespaces: delay, loss, one-way loss" "$regroup_tests" \
        --ignored --exact tcp_between_namespaces_delay_loss_and_asymmetric_drops --test-threads=1
    step "tcp on a link slower than T per update: nobody suspected" "$regroup_tests" \
        --ignored --exact an_update_that_takes_longer_than_t_on_a_slow_link_is_not_a_failure \
        --test-threads=1
    # shellcheck disable=SC2317 # invoked through step
    legacy_cpp() {
        local out loss
        out=$(timeout 600 "$malt" launch -n 2 --transport verbs --timeout 120 -- \
            "$capi_dir/svm_sgd_malt" "$capi_dir/train.libsvm" --epochs 3 --cb 2000)
        printf '%s\n' "$out"
        loss=$(sed -n 's/^\[0\] final objective \([-0-9.eE+]*\) .*/\1/p' <<<"$out")
        [[ -n $loss ]] || {
            say "no final objective from the C++ program"
            return 1
        }
        awk -v c="$loss" -v r="$rust_loss" 'BEGIN {
            d = (c - r) / r; if (d < 0) d = -d
            printf "C++ on verbs %.6f, malt train svm %.6f: %.2f%% apart\n", c, r, 100 * d
            exit !(d <= 0.02) }'
    }
    step "legacy C++ program through libmalt on verbs, 2 ranks" legacy_cpp
    exit 0
fi

# --------------------------------------------------------- on the host
start=$SECONDS
as_root() {
    if ((EUID == 0)); then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo -n "$@"
    else
        return 1
    fi
}

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v clang >/dev/null || missing+=(clang)
if command -v dpkg-query >/dev/null; then
    [[ $(dpkg-query -W -f='${db:Status-Abbrev}' libclang-dev 2>/dev/null) == ii* ]] || missing+=(libclang-dev)
fi
if ((${#missing[@]} > 0)); then
    say "installing ${missing[*]}"
    apt() { as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600 "$@"; }
    apt install --no-install-recommends "${missing[@]}" >/dev/null ||
        { apt update >/dev/null && apt install --no-install-recommends "${missing[@]}" >/dev/null; } ||
        {
            say "could not install ${missing[*]}; as root run: apt-get install ${missing[*]}"
            exit 1
        }
fi

say "preparing the soft-RoCE guest"
"$here/in-guest.sh" --prepare

say "building (release, --features verbs)"
cargo build --release -p malt --features verbs
cargo test --release -p dstorm --features verbs --lib verbs
cargo clippy -p dstorm -p malt --features malt/verbs --all-targets -- -D warnings
# The test executables' paths, from cargo's report: dstorm's transport
# tests from its own package, the ones that run the CLI from apps.
executables() { sed -n 's/^ *Executable .*(\(.*\))$/\1/p'; }
dstorm_tests=$(cargo test --release -p dstorm --features verbs --no-run --test transport 2>&1 |
    tee -a /dev/stderr | executables)
tests=$(cargo test --release -p malt --features verbs --no-run \
    --test cli_check --test verbs_faults --test faults 2>&1 | tee -a /dev/stderr | executables)
transport_tests=$(grep '/transport-' <<<"$dstorm_tests" || true)
check_tests=$(grep '/cli_check-' <<<"$tests" || true)
fault_tests=$(grep '/verbs_faults-' <<<"$tests" || true)
regroup_tests=$(grep '/faults-' <<<"$tests" | grep -v '/verbs_faults-' || true)
[[ -x $transport_tests && -x $check_tests && -x $fault_tests && -x $regroup_tests ]] || {
    say "could not find the test executables in cargo's output"
    exit 1
}
malt=${CARGO_TARGET_DIR:-target}/release/malt
[[ -x $malt ]] || {
    say "no $malt after the build"
    exit 1
}
malt=$(cd -- "$(dirname -- "$malt")" && pwd -P)/malt
# The legacy C++ program against a libmalt built with verbs, and the Rust
# trainer's objective on the same data to compare with.
capi_dir=$(dirname -- "$malt")/capi-verbs
for tool in g++ make pkg-config; do
    command -v "$tool" >/dev/null || {
        say "$tool is missing (capi/ci.sh installs it)"
        exit 1
    }
done
MALT_CAPI_FEATURES=verbs "$here/../capi/install.sh" "$capi_dir/prefix" >/dev/null
PKG_CONFIG_PATH=$capi_dir/prefix/lib/pkgconfig make -s -C "$here/../apps/legacy-cpp" \
    O="$capi_dir" CXX=g++
"$malt" data synth-sparse --rows 8000 --features 2000 --nnz 20 --seed 3 \
    --out "$capi_dir/train.libsvm" >/dev/null
rust_loss=$("$malt" train svm --ranks 2 --transport shm --data "$capi_dir/train.libsvm" \
    --epochs 3 --cb 2000 --json --quiet --no-plot --out "$capi_dir/rust" |
    sed -n 's/.*"final_loss":\([-0-9.eE+]*\).*/\1/p')
[[ -n $rust_loss ]] || {
    say "malt train svm gave no final_loss"
    exit 1
}
say "build done after $((SECONDS - start)) s"

say "guest suite"
MALT_GUEST_TIMEOUT=${MALT_GUEST_TIMEOUT:-900} \
    "$here/in-guest.sh" "$here/ci-verbs.sh" --guest-suite "$malt" "$transport_tests" "$check_tests" \
    "$fault_tests" "$regroup_tests" "$capi_dir" "$rust_loss"
say "guest suite passed after $((SECONDS - start)) s"

if [[ ${MALT_CI_TWO_GUESTS:-1} != 0 ]]; then
    say "two-guest smoke test"
    "$here/two-guests.sh" "$malt"
fi
say "all verbs checks passed in $((SECONDS - start)) s"
