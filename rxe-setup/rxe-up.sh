#!/bin/bash
# Bring up a soft-RoCE (rdma_rxe) device on a Linux host whose kernel has the
# module.
#
#   rxe-setup/rxe-up.sh [NETDEV]
#
# NETDEV defaults to lo (enough for single-host runs); "default-route" picks
# the netdev of the IPv4 default route, which multi-host runs need. If rxe
# cannot be attached to lo, the default-route netdev is tried instead.
# Idempotent: an rxe link that already sits on NETDEV is reused.
#
# Environment:
#   MALT_RXE_NAME   name of the rxe device to create (default rxe0)
#
# On a kernel without RDMA support use rxe-setup/in-guest.sh instead.
set -euo pipefail

prog=rxe-up.sh
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
name=${MALT_RXE_NAME:-rxe0}
arg=${1:-}

die() {
    printf '%s: %s\n' "$prog" "$*" >&2
    exit 1
}
note() { printf '%s: %s\n' "$prog" "$*" >&2; }

case $arg in
-h | --help)
    sed -n '2,16s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
    exit 0
    ;;
esac
(($# <= 1)) || die "usage: rxe-up.sh [NETDEV|default-route]"
[[ $name =~ ^[A-Za-z0-9_.-]+$ ]] || die "MALT_RXE_NAME is not a device name: '$name'"
[[ -z $arg || $arg =~ ^[A-Za-z0-9_.@-]+$ ]] || die "not a netdev name: '$arg'"
[[ $(uname -s) == Linux ]] || die "soft-RoCE needs Linux; this is $(uname -s)"

missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v rdma >/dev/null || missing+=(iproute2)
command -v modprobe >/dev/null || missing+=(kmod)
command -v ibv_devices >/dev/null || missing+=(ibverbs-utils)
if ((${#missing[@]} > 0)); then
    die "missing tools; on Debian/Ubuntu: apt-get install $(printf '%s\n' "${missing[@]}" ibverbs-providers rdma-core | sort -u | tr '\n' ' ')"
fi

as_root() {
    if ((EUID == 0)); then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "need root for: $* (no sudo found)"
    fi
}

default_route_dev() {
    ip -o route show default 2>/dev/null |
        awk '{ for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit } }'
}

# 1. The kernel module.
if [[ ! -d /sys/module/rdma_rxe ]]; then
    if ! modinfo rdma_rxe >/dev/null 2>&1 && ! modprobe -n rdma_rxe >/dev/null 2>&1; then
        die "kernel $(uname -r) has no rdma_rxe module (CONFIG_RDMA_RXE).
  On Ubuntu it is in linux-modules-extra-$(uname -r); Debian's linux-image-amd64 ships it.
  Without it, run commands in a soft-RoCE guest: $here/in-guest.sh COMMAND"
    fi
    as_root modprobe rdma_rxe || die "modprobe rdma_rxe failed (see dmesg)"
    note "loaded rdma_rxe"
fi

# 2. The netdev.
case $arg in
'') netdev=lo ;;
default-route)
    netdev=$(default_route_dev)
    [[ -n $netdev ]] || die "no IPv4 default route; name a NETDEV"
    ;;
*) netdev=$arg ;;
esac
ip link show dev "$netdev" >/dev/null 2>&1 || die "no such netdev: $netdev (see: ip -br link)"
if [[ $netdev == lo ]]; then
    as_root ip link set lo up
elif ! ip -o link show dev "$netdev" | grep -q 'state UP\|,UP'; then
    note "warning: $netdev is not UP; the rxe port stays DOWN until it is"
fi

# 3. The rxe link.
link_netdev() { # prints the netdev of rxe device $1, if it exists
    rdma link show 2>/dev/null | awk -v d="$1/1" '$2 == d { for (i = 1; i < NF; i++) if ($i == "netdev") print $(i + 1) }'
}
existing=$(link_netdev "$name")
if [[ -n $existing ]]; then
    if [[ $existing != "$netdev" ]]; then
        die "$name already exists on $existing, not $netdev; remove it with: rdma link delete $name"
    fi
    note "$name already on $netdev"
else
    other=$(rdma link show 2>/dev/null | awk -v n="$netdev" '$NF == n || $(NF - 1) == n { sub("/.*", "", $2); print $2; exit }')
    if [[ -n $other ]]; then
        die "$netdev already carries rxe device $other; use MALT_RXE_NAME=$other, or remove it with: rdma link delete $other"
    fi
    if ! as_root rdma link add "$name" type rxe netdev "$netdev"; then
        fallback=$(default_route_dev)
        if [[ -z $arg && -n $fallback && $fallback != lo ]]; then
            note "rxe on lo failed; trying the default-route netdev $fallback"
            netdev=$fallback
            as_root rdma link add "$name" type rxe netdev "$netdev" ||
                die "rdma link add $name type rxe netdev $netdev failed (see dmesg)"
        else
            die "rdma link add $name type rxe netdev $netdev failed (see dmesg)"
        fi
    fi
    note "added $name on $netdev"
fi

state=/sys/class/infiniband/$name/ports/1/state
deadline=$((SECONDS + 10))
until grep -qs ACTIVE "$state"; do
    if ((SECONDS >= deadline)); then
        rdma link show "$name/1" >&2 || true
        die "$name port 1 is not ACTIVE after 10 s (is $netdev up?)"
    fi
    sleep 0.1
done

# 4. What user space sees.
rdma link show "$name/1"
if ! ibv_devices | awk 'NR > 2 { print $1 }' | grep -qx "$name"; then
    ibv_devices >&2 || true
    die "libibverbs does not list $name: install the rxe provider (apt-get install ibverbs-providers)"
fi
ibv_devices
[[ -e /dev/infiniband/uverbs0 ]] || note "warning: /dev/infiniband/uverbs* missing (is ib_uverbs loaded?)"

echo "GIDs of $name port 1 (non-zero):"
mapped=''
for g in /sys/class/infiniband/"$name"/ports/1/gids/*; do
    i=${g##*/}
    gid=$(cat "$g" 2>/dev/null) || continue
    [[ $gid == 0000:0000:0000:0000:0000:0000:0000:0000 ]] && continue
    type=$(cat "/sys/class/infiniband/$name/ports/1/gid_attrs/types/$i" 2>/dev/null || echo '?')
    printf '  index %-3s %s  %s\n' "$i" "$gid" "$type"
    if [[ -z $mapped && $type == "RoCE v2" && $gid == 0000:0000:0000:0000:0000:ffff:* ]]; then mapped=$i; fi
done
if [[ -n $mapped ]]; then
    echo "RoCEv2 IPv4-mapped GID index: $mapped (MALT_RDMA_GID_INDEX=$mapped; perftest: -x $mapped)"
else
    note "warning: no RoCEv2 IPv4-mapped GID; give $netdev an IPv4 address"
fi

# 5. Locked memory: every memory registration pins pages.
memlock=$(ulimit -l)
if [[ $memlock != unlimited ]]; then
    note "ulimit -l is $memlock KiB: memory registration needs more. Before running malt:
  ulimit -l unlimited            (as root, in the same shell)
  or add to /etc/security/limits.d/rdma.conf:  *  -  memlock  unlimited
  or LimitMEMLOCK=infinity for a systemd service"
fi
echo "soft-RoCE ready: device $name on $netdev"
