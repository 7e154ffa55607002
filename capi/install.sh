#!/usr/bin/env bash
# Installs malt's C API under PREFIX (X.Y.Z: the workspace version in
# Cargo.toml, 0.1.0 today):
#
#   PREFIX/include/malt.h
#   PREFIX/lib/libmalt.so.X.Y.Z   (soname libmalt.so.X: libmalt.so.0 for 0.x)
#   PREFIX/lib/libmalt.so.X       -> libmalt.so.X.Y.Z
#   PREFIX/lib/libmalt.so         -> libmalt.so.X
#   PREFIX/lib/libmalt.a
#   PREFIX/lib/pkgconfig/malt.pc
#
# after building it in release (cargo build --release -p malt-capi; a set
# CARGO_TARGET_DIR is honoured). Then build prog.c into prog, against the
# shared library or with libmalt.a linked in (then only the system's C
# libraries are shared: no libmalt.so needed at run time):
#
#   export PKG_CONFIG_PATH=PREFIX/lib/pkgconfig
#   cc prog.c $(pkg-config --cflags --libs malt) -Wl,-rpath,PREFIX/lib -o prog  # shared
#   cc prog.c $(pkg-config --cflags malt) $(pkg-config --variable=static_libs malt) -o prog  # static
#
# (capi/packaging.sh builds and runs the quick start with these two lines.)
#
# usage: capi/install.sh [--no-build] PREFIX
# (MALT_CAPI_FEATURES=verbs: with the verbs transport)
set -euo pipefail

usage() { echo "usage: $0 [--no-build] PREFIX" >&2; exit 2; }
build=1
if [[ ${1:-} == --no-build ]]; then build=0; shift; fi
[[ $# -eq 1 && -n $1 ]] || usage

root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
prefix=$(cd "$1" && pwd)
cd "$root"

if ((build)); then
    # MALT_CAPI_FEATURES=verbs builds libmalt with the verbs transport.
    cargo build --release -p malt-capi ${MALT_CAPI_FEATURES:+--features "$MALT_CAPI_FEATURES"}
fi
target=${CARGO_TARGET_DIR:-}
if [[ -z $target ]]; then
    target=$(cargo metadata --format-version 1 --no-deps |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
fi
[[ $target == /* ]] || target=$root/$target
lib=$target/release
for f in libmalt_capi.so libmalt_capi.a; do
    [[ -f $lib/$f ]] || { echo "$lib/$f is missing: build with cargo build --release -p malt-capi" >&2; exit 1; }
done

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
# What the static library needs from the system, as
# `cargo rustc -p malt-capi --lib --crate-type staticlib -- --print native-static-libs`
# reports it on Linux.
libs_private="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"

major=${version%%.*}
if command -v readelf >/dev/null; then
    soname=$(readelf -d "$lib/libmalt_capi.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
    [[ $soname == "libmalt.so.$major" ]] || {
        echo "$lib/libmalt_capi.so has soname '$soname', not libmalt.so.$major: rebuild it" >&2
        exit 1
    }
fi

install -d "$prefix/include" "$prefix/lib/pkgconfig"
install -m 0644 include/malt.h "$prefix/include/malt.h"
install -m 0755 "$lib/libmalt_capi.so" "$prefix/lib/libmalt.so.$version"
ln -sfn "libmalt.so.$version" "$prefix/lib/libmalt.so.$major"
ln -sfn "libmalt.so.$major" "$prefix/lib/libmalt.so"
install -m 0644 "$lib/libmalt_capi.a" "$prefix/lib/libmalt.a"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" -e "s|@LIBS_PRIVATE@|$libs_private|" \
    capi/malt.pc.in >"$prefix/lib/pkgconfig/malt.pc"
echo "installed malt $version C API into $prefix (pkg-config: $prefix/lib/pkgconfig)"
