#!/bin/bash
# Run a command inside a qemu guest that has soft-RoCE (rdma_rxe) up, on a
# host whose kernel has no RDMA support.
#
#   rxe-setup/in-guest.sh COMMAND [ARGS...]
#
# The guest runs Debian's linux-image-amd64 kernel under TCG, sees the host's
# root file system read-only over 9p and the current directory read-write at
# the same path, loads rdma_rxe, adds rxe0 on lo, raises `ulimit -l`, changes
# to the current directory and runs COMMAND with a filtered copy of the
# environment. COMMAND's stdout and stderr stream to this script's stdout and
# stderr, and this script exits with COMMAND's exit status.
#
# Exit status: COMMAND's own, or 124 when MALT_GUEST_TIMEOUT expired, or 125
# when the guest could not be prepared or did not report a status.
#
# Everything the guest needs is built from Debian packages and cached; see
# README.md next to this script for the environment variables.
#
# A network device (off by default: the guest has no NIC at all):
#   MALT_GUEST_NETDEV    qemu -netdev backend for one virtio NIC, e.g.
#                        "socket,listen=127.0.0.1:5555" / "socket,connect=127.0.0.1:5555"
#                        (two guests joined on loopback; see two-guests.sh)
#   MALT_GUEST_MAC       its MAC address (default 52:54:00:12:34:56; guests
#                        on one link need different ones)
#   MALT_GUEST_NET_ADDR  address/prefix the guest gives the NIC (eth0), e.g.
#                        10.77.0.1/24; put rxe on it with MALT_GUEST_RXE_NETDEV=eth0
#                        (virtio_net is loaded when this is set)
set -euo pipefail

prog=in-guest.sh
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)

die() {
    printf '%s: %s\n' "$prog" "$*" >&2
    exit 125
}
note() { printf '%s: %s\n' "$prog" "$*" >&2; }

usage() {
    cat <<'EOF'
usage: in-guest.sh COMMAND [ARGS...]
       in-guest.sh --prepare     (only prepare the cache, print what it holds)

Runs COMMAND inside a qemu (TCG) guest with soft-RoCE device rxe0 on lo,
from the current directory, and exits with COMMAND's exit status.
See rxe-setup/README.md for the environment variables.
EOF
}

(($# > 0)) || {
    usage >&2
    exit 125
}
case $1 in
-h | --help)
    usage
    exit 0
    ;;
esac

# ---------------------------------------------------------------- settings
cache=${MALT_RXE_CACHE:-${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}/malt-rxe}
timeout_s=${MALT_GUEST_TIMEOUT:-1200}
mem=${MALT_GUEST_MEM:-2048}
cpus=${MALT_GUEST_CPUS:-2}
accel=${MALT_GUEST_ACCEL:-tcg}
rxe_on=${MALT_GUEST_RXE:-1}
rxe_name=${MALT_GUEST_RXE_NAME:-rxe0}
rxe_netdev=${MALT_GUEST_RXE_NETDEV:-lo}
lock_wait=${MALT_RXE_LOCK_WAIT:-1800}
verbose=${MALT_GUEST_VERBOSE:-0}
netdev=${MALT_GUEST_NETDEV:-}
mac=${MALT_GUEST_MAC:-52:54:00:12:34:56}
net_addr=${MALT_GUEST_NET_ADDR:-}

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
{ is_uint "$timeout_s" && ((timeout_s > 0)); } || die "MALT_GUEST_TIMEOUT must be a positive number of seconds, got '$timeout_s'"
{ is_uint "$mem" && ((mem >= 256)); } || die "MALT_GUEST_MEM must be MiB (>= 256), got '$mem'"
{ is_uint "$cpus" && ((cpus >= 1)); } || die "MALT_GUEST_CPUS must be a positive integer, got '$cpus'"
is_uint "$lock_wait" || die "MALT_RXE_LOCK_WAIT must be seconds, got '$lock_wait'"
[[ $rxe_on == 0 || $rxe_on == 1 ]] || die "MALT_GUEST_RXE must be 0 or 1, got '$rxe_on'"
[[ $rxe_name =~ ^[A-Za-z0-9_.-]+$ ]] || die "MALT_GUEST_RXE_NAME is not a device name: '$rxe_name'"
[[ $rxe_netdev =~ ^[A-Za-z0-9_.-]+$ ]] || die "MALT_GUEST_RXE_NETDEV is not a netdev name: '$rxe_netdev'"
[[ -z $netdev || $netdev =~ ^[A-Za-z0-9_.,:=/-]+$ ]] || die "MALT_GUEST_NETDEV is not a qemu netdev backend: '$netdev'"
[[ $netdev != *id=* ]] || die "MALT_GUEST_NETDEV must not set id= (the script names the netdev)"
[[ $mac =~ ^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$ ]] || die "MALT_GUEST_MAC is not a MAC address: '$mac'"
[[ -z $net_addr || $net_addr =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$ ]] ||
    die "MALT_GUEST_NET_ADDR must be an IPv4 address/prefix such as 10.77.0.1/24, got '$net_addr'"
[[ -z $net_addr || -n $netdev ]] || die "MALT_GUEST_NET_ADDR needs MALT_GUEST_NETDEV (the guest has no NIC otherwise)"

# Host packages: qemu, the tools the guest's second stage runs from the host
# root (mount, kmod, iproute2), and the RDMA userland that commands in the
# guest use (libibverbs with the rxe provider, ibv_* utilities, perftest).
host_packages=(qemu-system-x86 cpio gzip kmod iproute2 util-linux
    rdma-core ibverbs-providers ibverbs-utils perftest)
# Modules the initramfs loads (with their dependencies): what it needs to mount
# the host root, and soft-RoCE itself (loading it there is faster than from
# the 9p-shared module tree later). crc32_generic backs rxe's ICRC.
initramfs_modules=(virtio_pci virtio_console 9pnet_virtio 9p virtio_rng
    crc32_generic rdma_rxe rdma_ucm)

# ------------------------------------------------------------ preparation
as_root() {
    if ((EUID == 0)); then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo -n "$@"
    else
        return 1
    fi
}

apt_get() {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -y \
        -o DPkg::Lock::Timeout=600 "$@"
}

apt_updated=0
apt_update() {
    ((apt_updated)) && return 0
    note "apt-get update"
    apt_get update >>"$cache/apt.log" 2>&1 || {
        tail -n 20 "$cache/apt.log" >&2
        die "apt-get update failed (log: $cache/apt.log)"
    }
    apt_updated=1
}

ensure_host_packages() {
    command -v dpkg-query >/dev/null || {
        for c in qemu-system-x86_64 cpio gzip depmod modprobe ip rdma mount flock timeout ibv_devices; do
            command -v "$c" >/dev/null || die "'$c' is missing and this is not a Debian-based host; install it"
        done
        return 0
    }
    local missing=() p
    for p in "${host_packages[@]}"; do
        [[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null) == ii* ]] || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    command -v apt-get >/dev/null || die "missing packages: ${missing[*]} (and no apt-get)"
    note "installing Debian packages: ${missing[*]}"
    if ! apt_get install --no-install-recommends "${missing[@]}" >>"$cache/apt.log" 2>&1; then
        apt_update
        apt_get install --no-install-recommends "${missing[@]}" >>"$cache/apt.log" 2>&1 || {
            tail -n 20 "$cache/apt.log" >&2
            die "could not install ${missing[*]}; as root run: apt-get install ${missing[*]}"
        }
    fi
}

# Download one Debian package (without installing it) into directory $2.
apt_download() {
    local pkg=$1 dir=$2 sandbox=()
    ((EUID == 0)) && sandbox=(-o APT::Sandbox::User=root)
    if ! (cd -- "$dir" && apt-get -q "${sandbox[@]}" download "$pkg") >>"$cache/apt.log" 2>&1; then
        apt_update
        (cd -- "$dir" && apt-get -q "${sandbox[@]}" download "$pkg") >>"$cache/apt.log" 2>&1 || {
            tail -n 20 "$cache/apt.log" >&2
            die "apt-get download $pkg failed (log: $cache/apt.log)"
        }
    fi
}

resolve_kernel_package() {
    if [[ -n ${MALT_GUEST_KERNEL_PKG:-} ]]; then
        printf '%s\n' "$MALT_GUEST_KERNEL_PKG"
        return
    fi
    if [[ ${MALT_RXE_REFRESH:-0} != 1 && -s $cache/kernel-package ]]; then
        cat -- "$cache/kernel-package"
        return
    fi
    local pkg
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
    if [[ -z $pkg ]]; then
        apt_update
        pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
    fi
    [[ -n $pkg ]] || die "cannot resolve linux-image-amd64 to a kernel package (set MALT_GUEST_KERNEL_PKG)"
    printf '%s\n' "$pkg" >"$cache/kernel-package.tmp"
    mv -f -- "$cache/kernel-package.tmp" "$cache/kernel-package"
    printf '%s\n' "$pkg"
}

# Fills $cache/kernels/PKG with vmlinuz, kver and kroot/lib/modules/KVER
# (depmod'ed).
prepare_kernel() {
    local pkg=$1 dir=$cache/kernels/$1 tmp kver mods
    [[ -e $dir/complete ]] && return 0
    note "preparing guest kernel $pkg"
    tmp=$(mktemp -d "$cache/tmp.XXXXXX")
    apt_download "$pkg" "$tmp"
    mkdir "$tmp/x" "$tmp/k"
    dpkg-deb -x "$tmp"/*.deb "$tmp/x"
    if [[ -d $tmp/x/lib/modules ]]; then mods=$tmp/x/lib/modules; else mods=$tmp/x/usr/lib/modules; fi
    [[ -d $mods ]] || die "$pkg has no module tree"
    kver=$(ls -- "$mods")
    [[ -n $kver && $kver != *$'\n'* ]] || die "$pkg: expected one module directory, found: $kver"
    compgen -G "$mods/$kver/kernel/drivers/infiniband/sw/rxe/rdma_rxe.ko*" >/dev/null ||
        die "$pkg ships no rdma_rxe module"
    mv -- "$tmp/x/boot/vmlinuz-$kver" "$tmp/k/vmlinuz"
    mkdir -p "$tmp/k/kroot/lib"
    mv -- "$mods" "$tmp/k/kroot/lib/modules"
    depmod -b "$tmp/k/kroot" "$kver"
    printf '%s\n' "$kver" >"$tmp/k/kver"
    touch "$tmp/k/complete"
    mkdir -p "$cache/kernels"
    rm -rf -- "$dir"
    mv -- "$tmp/k" "$dir"
    rm -rf -- "$tmp"
}

# A static busybox for the initramfs, from busybox-static (not installed).
prepare_busybox() {
    local tmp
    [[ -x $cache/busybox/busybox && ${MALT_RXE_REFRESH:-0} != 1 ]] && return 0
    note "preparing busybox (busybox-static)"
    tmp=$(mktemp -d "$cache/tmp.XXXXXX")
    apt_download busybox-static "$tmp"
    mkdir "$tmp/x"
    dpkg-deb -x "$tmp"/busybox-static_*.deb "$tmp/x"
    local bb
    for bb in "$tmp/x/bin/busybox" "$tmp/x/usr/bin/busybox"; do
        [[ -x $bb ]] && break
    done
    [[ -x $bb ]] || die "busybox-static has no busybox binary"
    mkdir -p "$cache/busybox"
    mv -f -- "$bb" "$cache/busybox/busybox.tmp"
    mv -f -- "$cache/busybox/busybox.tmp" "$cache/busybox/busybox"
    rm -rf -- "$tmp"
}

# Prints the initramfs path; builds it when its inputs changed.
prepare_initramfs() {
    local kdir=$1 kver key out tmp m line f name
    kver=$(<"$kdir/kver")
    key=$( {
        printf '%s\n' "$kver" "${initramfs_modules[@]}"
        cat -- "$here/guest/stage1.sh" "$cache/busybox/busybox"
    } | sha256sum | cut -c1-16)
    out=$cache/initramfs/$kver-$key.cpio.gz
    if [[ ! -s $out ]]; then
        note "building initramfs for $kver"
        tmp=$(mktemp -d "$cache/tmp.XXXXXX")
        mkdir -p "$tmp/root/bin" "$tmp/root/lib/modules" "$tmp/root/dev" \
            "$tmp/root/proc" "$tmp/root/sys" "$tmp/root/newroot"
        cp -- "$cache/busybox/busybox" "$tmp/root/bin/busybox"
        ln -s busybox "$tmp/root/bin/sh"
        cp -- "$here/guest/stage1.sh" "$tmp/root/init"
        chmod 0755 "$tmp/root/init" "$tmp/root/bin/busybox"
        : >"$tmp/root/lib/modules/order"
        for m in "${initramfs_modules[@]}"; do
            while read -r line; do
                [[ $line == insmod\ * ]] || continue
                f=${line#insmod }
                f=${f%% *}
                name=${f##*/}
                case $name in
                *.ko) ;;
                *) die "compressed module $name is not supported in the initramfs" ;;
                esac
                grep -qxF -- "$name" "$tmp/root/lib/modules/order" && continue
                cp -- "$f" "$tmp/root/lib/modules/$name"
                printf '%s\n' "$name" >>"$tmp/root/lib/modules/order"
            done < <(modprobe -d "$kdir/kroot" -S "$kver" --show-depends "$m")
        done
        [[ -s $tmp/root/lib/modules/order ]] || die "no modules resolved for the initramfs"
        (cd -- "$tmp/root" && find . -print0 | LC_ALL=C sort -z |
            cpio --null -o -H newc --quiet --owner=0:0) | gzip -1 >"$tmp/initramfs.cpio.gz"
        mkdir -p "$cache/initramfs"
        mv -f -- "$tmp/initramfs.cpio.gz" "$out"
        rm -rf -- "$tmp"
    fi
    printf '%s\n' "$out"
}

mkdir -p -- "$cache" || die "cannot create cache directory $cache"
exec {lockfd}>"$cache/lock"
flock -w "$lock_wait" "$lockfd" || die "timed out after ${lock_wait}s waiting for $cache/lock"
prep_start=$SECONDS
ensure_host_packages
rm -rf -- "$cache"/tmp.*
kernel_pkg=$(resolve_kernel_package)
prepare_kernel "$kernel_pkg"
kdir=$cache/kernels/$kernel_pkg
prepare_busybox
initramfs=$(prepare_initramfs "$kdir")
exec {lockfd}>&-
((SECONDS - prep_start < 3)) || note "preparation took $((SECONDS - prep_start)) s"

if [[ $1 == --prepare ]]; then
    printf 'cache: %s\nkernel: %s (%s)\ninitramfs: %s\n' "$cache" "$kernel_pkg" "$(<"$kdir/kver")" "$initramfs"
    exit 0
fi

# ----------------------------------------------------------------- the run
cwd=$(pwd -P)
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/malt-rxe-run.XXXXXX")
ctl=$run_dir/ctl
mkdir "$ctl"
qemu_pid='' out_pid='' err_pid=''

unblock_fifo() {
    # Opening a FIFO read-write never blocks; a reader still waiting in open()
    # (qemu never opened its end) wakes up and sees EOF.
    local fd
    exec {fd}<>"$1"
    exec {fd}>&-
}

# shellcheck disable=SC2317 # invoked through the EXIT trap
cleanup() {
    local status=$? i
    trap - EXIT INT TERM HUP
    if [[ -n $qemu_pid ]] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill -TERM "$qemu_pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$qemu_pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$qemu_pid" 2>/dev/null; then
            pkill -KILL -P "$qemu_pid" 2>/dev/null || true
            kill -KILL "$qemu_pid" 2>/dev/null || true
        fi
        wait "$qemu_pid" 2>/dev/null || true
    fi
    for p in "$out_pid" "$err_pid"; do
        if [[ -n $p ]]; then kill "$p" 2>/dev/null || true; fi
    done
    if [[ ${MALT_GUEST_KEEP_RUN_DIR:-0} == 1 ]]; then
        note "run directory kept: $run_dir"
    else
        rm -rf -- "$run_dir"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Read-write shares: the working directory, CARGO_TARGET_DIR when it lies
# elsewhere, and the colon-separated MALT_GUEST_RW_PATHS.
rw_paths=()
add_rw() {
    local p=$1 q
    [[ -d $p ]] || die "cannot share '$p': not a directory"
    p=$(cd -- "$p" && pwd -P)
    [[ $p != / ]] || return 0
    [[ $p != *$'\n'* ]] || die "cannot share a path containing a newline"
    for q in "${rw_paths[@]}"; do
        [[ $p == "$q" || $p == "$q"/* ]] && return 0
    done
    rw_paths+=("$p")
}
add_rw "$cwd"
if [[ -n ${CARGO_TARGET_DIR:-} && -d $CARGO_TARGET_DIR ]]; then add_rw "$CARGO_TARGET_DIR"; fi
if [[ -n ${MALT_GUEST_RW_PATHS:-} ]]; then
    IFS=: read -r -a extra <<<"$MALT_GUEST_RW_PATHS"
    for p in "${extra[@]}"; do
        if [[ -n $p ]]; then add_rw "$p"; fi
    done
fi
# Parents before children: sort by length.
mapfile -t rw_paths < <(for p in "${rw_paths[@]}"; do printf '%d\t%s\n' "${#p}" "$p"; done | sort -n | cut -f2-)

qemu_path() { printf '%s' "${1//,/,,}"; }

fsdev_args=()
add_fsdev() { # tag path readonly cache
    local tag=$1 path=$2 ro=$3
    local opts
    opts="local,id=fs_$tag,path=$(qemu_path "$path"),security_model=none,multidevs=remap"
    [[ $ro == 1 ]] && opts+=",readonly=on"
    fsdev_args+=(-fsdev "$opts" -device "virtio-9p-pci,fsdev=fs_$tag,mount_tag=$tag")
}
add_fsdev hostroot / 1
add_fsdev ctl "$ctl" 0
add_fsdev kroot "$kdir/kroot" 1
shares=()
for i in "${!rw_paths[@]}"; do
    add_fsdev "rw$i" "${rw_paths[i]}" 0
    shares+=("rw$i" "${rw_paths[i]}")
done

extra_modules=()
if [[ -n ${MALT_GUEST_MODULES:-} ]]; then
    read -r -a extra_modules <<<"${MALT_GUEST_MODULES//,/ }"
fi

quote_words() { if (($# > 0)); then printf ' %q' "$@"; fi; }
{
    printf 'MALT_GUEST_SHARES=(%s )\n' "$(quote_words "${shares[@]}")"
    printf 'MALT_GUEST_MODULES=(%s )\n' "$(quote_words "${extra_modules[@]}")"
    printf 'MALT_GUEST_RXE=%q\nMALT_GUEST_RXE_NAME=%q\nMALT_GUEST_RXE_NETDEV=%q\n' \
        "$rxe_on" "$rxe_name" "$rxe_netdev"
    printf 'MALT_GUEST_NET_ADDR=%q\n' "$net_addr"
} >"$ctl/config.sh"

# The command's environment: a safe subset of ours.
pass_env() {
    case $1 in
    PATH | HOME | USER | LOGNAME | LANG | LANGUAGE | LC_* | TERM | TZ | CI | NO_COLOR | CLICOLOR | CLICOLOR_FORCE) return 0 ;;
    RUST_* | RUSTUP_* | RUSTFLAGS | RUSTDOCFLAGS | CARGO_* | NEXTEST_* | MALT_*) return 0 ;;
    esac
    local wanted=" ${MALT_GUEST_ENV:-} "
    [[ ${wanted//,/ } == *" $1 "* ]]
}
{
    echo '#!/bin/bash'
    while read -r name; do
        if pass_env "$name"; then printf 'export %s=%q\n' "$name" "${!name}"; fi
    done < <(compgen -e)
    echo 'export TMPDIR=/tmp'
    [[ -n ${PATH:-} ]] || echo 'export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin'
    # The guest's modprobe (it knows where the guest kernel's modules are).
    # shellcheck disable=SC2016 # expands in the guest
    echo 'export PATH="/run/malt-rxe/bin:$PATH"'
    printf 'cd -- %q || { echo "in-guest: cannot enter %q" >&2; exit 125; }\n' "$cwd" "$cwd"
    printf 'exec --'
    printf ' %q' "$@"
    printf '\n'
} >"$ctl/run.sh"
cp -- "$here/guest/stage2.sh" "$ctl/stage2.sh"

mkfifo "$run_dir/out" "$run_dir/err"
cat "$run_dir/out" &
out_pid=$!
cat "$run_dir/err" >&2 &
err_pid=$!

console_path=$run_dir/console.log
[[ $verbose == 1 ]] && console_path=$run_dir/err

append="console=ttyS0 panic=-1 oops=panic quiet loglevel=4 ${MALT_GUEST_APPEND:-}"
nic_args=(-nic none)
if [[ -n $netdev ]]; then
    nic_args=(-netdev "$netdev,id=net0" -device "virtio-net-pci,netdev=net0,mac=$mac")
fi
# shellcheck disable=SC2054 # commas belong to qemu's option syntax
qemu_args=(
    -accel "$accel" -machine pc -cpu max -smp "$cpus" -m "$mem"
    -nodefaults -no-user-config -display none -no-reboot "${nic_args[@]}"
    -kernel "$kdir/vmlinuz" -initrd "$initramfs" -append "$append"
    -chardev "file,id=console,path=$(qemu_path "$console_path")" -serial chardev:console
    -device virtio-serial-pci,id=vser
    -chardev "file,id=gout,path=$(qemu_path "$run_dir/out")"
    -device virtserialport,bus=vser.0,chardev=gout,name=malt.stdout
    -chardev "file,id=gerr,path=$(qemu_path "$run_dir/err")"
    -device virtserialport,bus=vser.0,chardev=gerr,name=malt.stderr
    -device virtio-rng-pci
    "${fsdev_args[@]}"
)

start=$SECONDS
timeout -k 10 "$timeout_s" qemu-system-x86_64 "${qemu_args[@]}" </dev/null >"$run_dir/qemu.log" 2>&1 &
qemu_pid=$!
qemu_rc=0
wait "$qemu_pid" || qemu_rc=$?
qemu_pid=''
elapsed=$((SECONDS - start))

unblock_fifo "$run_dir/out"
unblock_fifo "$run_dir/err"
wait "$out_pid" "$err_pid" 2>/dev/null || true
out_pid='' err_pid=''

[[ $verbose == 1 ]] && note "guest ran for ${elapsed}s (qemu exit status $qemu_rc)"

show_logs() {
    if [[ -s $ctl/error ]]; then
        note "guest setup error:"
        sed 's/^/  /' "$ctl/error" >&2
    fi
    if [[ -s $run_dir/qemu.log ]]; then
        note "qemu output:"
        tail -n 20 "$run_dir/qemu.log" | sed 's/^/  /' >&2
    fi
    if [[ $verbose != 1 && -s $console_path ]]; then
        note "last lines of the guest console:"
        tail -n 30 "$console_path" | sed 's/^/  /' >&2
    fi
}

if [[ -s $ctl/rc ]]; then
    rc=$(<"$ctl/rc")
    is_uint "$rc" || die "guest reported a malformed exit status '$rc'"
    ((qemu_rc != 124)) || note "warning: the guest did not power off within MALT_GUEST_TIMEOUT=${timeout_s}s after the command ended"
    exit "$rc"
fi
if ((qemu_rc == 124 || qemu_rc == 137)); then
    show_logs
    note "timed out: the guest was killed after MALT_GUEST_TIMEOUT=${timeout_s}s without the command finishing"
    exit 124
fi
show_logs
die "the guest stopped (qemu exit status $qemu_rc after ${elapsed}s) without reporting the command's exit status"
