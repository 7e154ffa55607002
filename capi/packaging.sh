#!/usr/bin/env bash
# Checks malt's C API as users get it, after
# `cargo build --release -p malt-capi -p malt` (a set CARGO_TARGET_DIR is
# honoured, as by capi/install.sh):
#
#  1. capi/install.sh --no-build installs it into WORKDIR/prefix: libmalt.so
#     with soname libmalt.so.MAJOR and its links, libmalt.a, malt.h and a
#     malt.pc that `pkg-config --cflags --libs malt` reads;
#  2. include/malt.h compiles without a warning (-Werror) as C89 (gcc
#     -pedantic -Wall -Wextra), C11 (gcc -pedantic), C++98 (g++ -pedantic)
#     and C99 (clang -pedantic), malt_init() included;
#  3. its MALT_VERSION_* macros are the workspace version in Cargo.toml;
#  4. the README's C quick start is capi/tests/c/quick_start.c; built with
#     the shared and the static recipes of capi/install.sh's header comment
#     (the static program needs no libmalt.so), both converge on 2 ranks;
#  5. the README's quick-start commands, the ```sh block that follows the
#     line `<!-- capi/packaging.sh runs this block -->`, run as written from
#     the repository root (HOME is a scratch directory meanwhile).
#
# usage: capi/packaging.sh MALT_BINARY WORKDIR
# As root it installs missing tools from Debian packages (apt-get).
# Prints `ok: ...` per check and `packaging: N passed, 0 failed (S s)`; on a
# failure `FAILED: ...` and exits 1.
set -euo pipefail

if [[ $# -ne 2 || -z $1 || -z $2 ]]; then
    echo "usage: $0 MALT_BINARY WORKDIR" >&2
    exit 2
fi
malt=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
mkdir -p "$2"
work=$(cd "$2" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CARGO_TERM_COLOR=never

checks_name=packaging
# shellcheck source=capi/steps.sh
source "$root/capi/steps.sh"

step "tools"
# command -> the Debian package that provides it
declare -A package=([gcc]=gcc [g++]=g++ [clang]=clang [pkg-config]=pkg-config
    [readelf]=binutils [ldd]=libc-bin [cmp]=diffutils [awk]=gawk)
need=()
for tool in gcc g++ clang pkg-config readelf ldd cmp awk; do
    command -v "$tool" >/dev/null || need+=("${package[$tool]}")
done
install_packages "${need[@]}"
[[ -x $malt && -f $malt ]] || fail "$malt is not an executable (cargo build --release -p malt)"
ok "gcc, g++, clang, pkg-config, readelf, ldd; malt binary $malt"

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
[[ $version =~ ^([0-9]+)\.([0-9]+)\.([0-9]+) ]] || fail "no workspace version in Cargo.toml: '$version'"
major=${BASH_REMATCH[1]} minor=${BASH_REMATCH[2]} patch=${BASH_REMATCH[3]}

step "install and pkg-config"
prefix=$work/prefix
rm -rf "$prefix"
timeout 600 bash capi/install.sh --no-build "$prefix" || fail "capi/install.sh --no-build $prefix"
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
flags=$(timeout 30 pkg-config --cflags --libs malt) || fail "pkg-config --cflags --libs malt"
[[ $flags == *"-I$prefix/include"* && $flags == *"-L$prefix/lib"* && $flags == *-lmalt* ]] ||
    fail "unexpected pkg-config flags: $flags"
[[ $(timeout 30 pkg-config --modversion malt) == "$version" ]] || fail "malt.pc's version is not $version"
lib=$prefix/lib
[[ -f $lib/libmalt.so.$version && ! -L $lib/libmalt.so.$version ]] || fail "no $lib/libmalt.so.$version"
[[ -L $lib/libmalt.so.$major && $(readlink "$lib/libmalt.so.$major") == "libmalt.so.$version" ]] ||
    fail "$lib/libmalt.so.$major is not a link to libmalt.so.$version"
[[ -L $lib/libmalt.so && $(readlink "$lib/libmalt.so") == "libmalt.so.$major" ]] ||
    fail "$lib/libmalt.so is not a link to libmalt.so.$major"
[[ -f $lib/libmalt.a && -f $prefix/include/malt.h ]] || fail "libmalt.a or malt.h is not installed"
cmp -s include/malt.h "$prefix/include/malt.h" || fail "the installed malt.h is not include/malt.h"
soname=$(timeout 30 readelf -d "$lib/libmalt.so.$version" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[[ $soname == "libmalt.so.$major" ]] || fail "the soname of libmalt.so.$version is '$soname', not libmalt.so.$major"
ok "pkg-config --cflags --libs malt: $flags"
ok "lib/libmalt.so.$version (soname $soname), links libmalt.so.$major and libmalt.so, libmalt.a, include/malt.h"

step "malt.h under strict C and C++"
cflags=$(timeout 30 pkg-config --cflags malt)
grep -q 'malt_status malt_init_version(' "$prefix/include/malt.h" ||
    fail "malt.h does not declare malt_init_version, which its malt_init() macro calls"
cat >"$work/header.c" <<'EOF'
#include <malt.h>

static int start(void) {
    malt_options options = {0};
    malt_vector *vector = NULL;
    malt_status status = malt_init();
    (void)options;
    (void)vector;
    return status == MALT_OK ? 0 : 1;
}

int main(void) {
    return start();
}
EOF
cp "$work/header.c" "$work/header.cpp"
compilers=(
    "gcc -std=c89 -pedantic -Wall -Wextra -Werror:header.c"
    "gcc -std=c11 -pedantic -Werror:header.c"
    "g++ -std=c++98 -pedantic -Werror:header.cpp"
    "clang -std=c99 -pedantic -Werror:header.c"
)
for entry in "${compilers[@]}"; do
    compiler=${entry%:*} source=${entry##*:}
    # shellcheck disable=SC2086
    out=$(timeout 120 $compiler $cflags -c -o "$work/header.o" "$work/$source" 2>&1) ||
        fail "malt.h under $compiler: $out"
    [[ -z $out ]] || fail "malt.h under $compiler printed: $out"
    ok "malt.h compiles cleanly under $compiler"
done

step "version macros"
# shellcheck disable=SC2086
macros=$(printf '#include <malt.h>\nMALT_VERSION_MAJOR MALT_VERSION_MINOR MALT_VERSION_PATCH MALT_VERSION_STRING\n' |
    timeout 60 gcc -E -P $cflags -x c - | tail -n 1) || fail "preprocessing malt.h"
[[ $macros == "$major $minor $patch \"$version\"" ]] ||
    fail "MALT_VERSION_MAJOR, _MINOR, _PATCH, _STRING are '$macros', not the workspace version $version"
ok "MALT_VERSION_* = $macros, the workspace version in Cargo.toml"

# Runs a job of $1 ranks of the remaining command, bounded.
launch() {
    local n=$1
    shift
    timeout 300 "$malt" launch -n "$n" --transport shm --timeout 60 -- "$@"
}

step "C quick start, shared and static"
readme=${MALT_PACKAGING_README:-README.md}
timeout 30 awk '/^```c$/ { inside = 1; next } inside && /^```$/ { exit } inside { print }' "$readme" \
    >"$work/quick_start.c"
[[ -s $work/quick_start.c ]] || fail "no C quick start (a \`\`\`c block) in $readme"
cmp -s "$work/quick_start.c" capi/tests/c/quick_start.c ||
    fail "the quick start in $readme differs from capi/tests/c/quick_start.c"
ok "the C quick start in $readme is capi/tests/c/quick_start.c"
# The two recipes of capi/install.sh's header comment, as written there, for
# prog.c = the quick start (with warnings as errors).
cc=${CC:-cc}
command -v "$cc" >/dev/null || cc=gcc
for kind in shared static; do
    recipe=$(sed -n "s/^#   \(cc prog\.c .*[^ ]\) *# $kind\$/\1/p" capi/install.sh)
    [[ -n $recipe ]] || fail "capi/install.sh's header comment has no '# $kind' recipe"
    recipe=${recipe//PREFIX/$prefix}
    recipe=${recipe/#cc prog.c /$cc -std=c11 -Wall -Wextra -Werror capi/tests/c/quick_start.c }
    recipe=${recipe/%-o prog/-o \"$work/quick_start_$kind\"}
    [[ $recipe == *"-o \"$work/quick_start_$kind\"" ]] || fail "the $kind recipe does not end in -o prog"
    echo "$recipe"
    out=$(timeout 300 bash -c "$recipe" 2>&1) || fail "the $kind recipe: $out"
done
deps=$(timeout 30 ldd "$work/quick_start_static") || fail "ldd quick_start_static"
[[ $deps != *libmalt* ]] || fail "the static build needs libmalt.so: $deps"
deps=$(timeout 30 ldd "$work/quick_start_shared") || fail "ldd quick_start_shared"
[[ $deps == *"libmalt.so.$major => $lib/libmalt.so.$major "* ]] ||
    fail "the shared build does not find libmalt.so.$major in $lib: $deps"
ok "the shared build loads $lib/libmalt.so.$major; the static one needs no libmalt"
for kind in shared static; do
    out=$(launch 2 "$work/quick_start_$kind" 2>&1) || fail "quick_start_$kind on 2 ranks: $out"
    [[ $(grep -c 'w = 2.000 -3.000' <<<"$out") == 2 ]] || fail "quick_start_$kind did not converge: $out"
    ok "quick_start_$kind converges on 2 ranks"
done

step "the README's quick-start commands, as written"
marker='<!-- capi/packaging.sh runs this block -->'
block=$(timeout 30 awk -v marker="$marker" '
    $0 == marker { armed = 1; next }
    armed && /^```sh$/ { inside = 1; next }
    inside && /^```$/ { exit }
    inside { print }' "$readme")
[[ -n $block ]] || fail "no \`\`\`sh block after '$marker' in $readme"
grep -q 'capi/tests/c/quick_start\.c' <<<"$block" ||
    fail "the README's quick-start commands do not build capi/tests/c/quick_start.c"
echo "$block"
# What the block writes with -o into the repository is removed afterwards.
outputs=()
for o in $(grep -o -- '-o [^ ]*' <<<"$block" | cut -d' ' -f2); do
    [[ $o == /* || $o == *'$'* || -e $o ]] || outputs+=("$o")
done
cleanup() { if ((${#outputs[@]})); then rm -f -- "${outputs[@]}"; fi; }
trap cleanup EXIT
home=$work/home
rm -rf "$home"
mkdir -p "$home"
out=$(CARGO_HOME=${CARGO_HOME:-$HOME/.cargo} RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup} HOME=$home \
    timeout 1800 bash -euo pipefail -c "$block" 2>&1) || fail "the README's quick-start commands: $out"
cleanup
outputs=()
# Lines `[r] rank r of N: w = ...` (malt launch prefixes each rank's output).
world=$(sed -n 's/^\(\[[0-9]*\] \)\{0,1\}rank [0-9]* of \([0-9]*\): w = .*/\2/p' <<<"$out" | head -n 1)
[[ -n $world && $(grep -Ec "^(\[[0-9]+\] )?rank [0-9]+ of $world: w = 2\.000 -3\.000\$" <<<"$out") == "$world" ]] ||
    fail "the README's quick start did not converge on every rank: $out"
ok "the README's quick-start commands run as written and converge on $world ranks"

finish
