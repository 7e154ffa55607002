# Shared by capi/ci.sh, capi/packaging.sh and python/ci.sh (sourced, not
# run): numbered steps and checks of a check script named $checks_name. `ok` counts a check
# that held, `fail` reports one that did not and ends the script, `finish`
# prints the totals.
checks_passed=0
checks_started=$(date +%s)
checks_elapsed() { echo "$(($(date +%s) - checks_started))"; }
step() { printf '\n=== %s: %s (%ss)\n' "$checks_name" "$*" "$(checks_elapsed)"; }
ok() {
    checks_passed=$((checks_passed + 1))
    echo "ok: $*"
}
fail() {
    echo "FAILED: $*" >&2
    echo "$checks_name: $checks_passed passed, 1 failed ($(checks_elapsed) s)"
    exit 1
}
finish() {
    echo
    echo "$checks_name: $checks_passed passed, 0 failed ($(checks_elapsed) s)"
}
# Installs the Debian packages given (as root; a check script may apt-get
# what it needs), or fails naming them. Nothing to do without arguments.
install_packages() {
    (($#)) || return 0
    if [[ $(id -u) != 0 ]]; then
        fail "missing $*: install them (Debian: apt-get install $*)"
    fi
    echo "installing $*"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -qq || fail "apt-get update"
    timeout 1800 apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
        fail "apt-get install $*"
}
