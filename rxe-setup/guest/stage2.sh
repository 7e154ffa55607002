#!/bin/bash
# Second stage of the soft-RoCE guest: runs as PID 1 on the host's root file
# system (read-only over 9p) after stage1.sh switched root. The host copies
# this file into the per-run control share together with config.sh (shares,
# rxe settings) and run.sh (environment, working directory, command).
#
# Sets up the writable mounts, loads rdma_rxe, adds the rxe link, runs
# run.sh with its stdout/stderr on the virtio-serial ports "malt.stdout" and
# "malt.stderr", writes the exit status to ctl/rc and powers off.
set -Eeuo pipefail

ctl=/run/malt-rxe/ctl
bin=/run/malt-rxe/bin
busybox=$bin/busybox
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() {
    local up
    read -r up _ </proc/uptime
    printf '[%s] malt-rxe guest: %s\n' "$up" "$*" >&2
}

power_off() {
    sync || true
    "$busybox" poweroff -f || echo o >/proc/sysrq-trigger
    # Not reached: the kernel powers off. PID 1 must not exit meanwhile.
    while :; do "$busybox" sleep 60; done
}

fail() {
    log "setup failed: $*"
    printf '%s\n' "$*" >>"$ctl/error" || true
    power_off
}
trap 'fail "line $LINENO: $BASH_COMMAND exited with status $?"' ERR

# shellcheck source=/dev/null
. "$ctl/config.sh"
log "stage2 started"

echo localhost >/proc/sys/kernel/hostname

# Writable scratch space; the host root stays read-only.
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o mode=1777 shm /dev/shm
mount -t tmpfs -o mode=1777 tmp /tmp
ln -sfn /proc/self/fd /dev/fd
ln -sfn /proc/self/fd/0 /dev/stdin
ln -sfn /proc/self/fd/1 /dev/stdout
ln -sfn /proc/self/fd/2 /dev/stderr

ninep="trans=virtio,version=9p2000.L,msize=262144"

# The guest kernel's module tree (depmod'ed on the host) and a modprobe that
# uses it, also for the kernel's on-demand module requests.
mkdir -p /run/malt-rxe/kroot
mount -t 9p -o "ro,$ninep,cache=loose" kroot /run/malt-rxe/kroot
cat >"$bin/modprobe" <<'WRAPPER'
#!/bin/sh
exec /sbin/modprobe -d /run/malt-rxe/kroot "$@"
WRAPPER
chmod 0755 "$bin/modprobe"
echo "$bin/modprobe" >/proc/sys/kernel/modprobe

# Read-write shares (the working directory and any extra paths), parents first.
for ((i = 0; i < ${#MALT_GUEST_SHARES[@]}; i += 2)); do
    tag=${MALT_GUEST_SHARES[i]}
    path=${MALT_GUEST_SHARES[i + 1]}
    mkdir -p -- "$path" 2>/dev/null || fail "cannot create mount point $path (read-only in the guest)"
    mount -t 9p -o "$ninep,cache=mmap" "$tag" "$path" || fail "cannot mount share $tag on $path"
done

for m in "${MALT_GUEST_MODULES[@]}"; do
    "$bin/modprobe" "$m" || fail "modprobe $m failed"
done

ip link set lo up
if [[ -n ${MALT_GUEST_NET_ADDR:-} ]]; then
    [[ -d /sys/module/virtio_net ]] || "$bin/modprobe" virtio_net || fail "modprobe virtio_net failed"
    deadline=$((SECONDS + 20))
    until [[ -e /sys/class/net/eth0 ]]; do
        ((SECONDS < deadline)) || fail "no eth0 after loading virtio_net"
        sleep 0.1
    done
    ip addr add "$MALT_GUEST_NET_ADDR" dev eth0 || fail "ip addr add $MALT_GUEST_NET_ADDR dev eth0 failed"
    ip link set eth0 up || fail "ip link set eth0 up failed"
    log "eth0 is $MALT_GUEST_NET_ADDR"
fi
if [[ $MALT_GUEST_RXE == 1 ]]; then
    # Normally loaded by the initramfs already.
    [[ -d /sys/module/rdma_rxe ]] || "$bin/modprobe" rdma_rxe || fail "modprobe rdma_rxe failed"
    [[ -d /sys/module/rdma_ucm ]] || "$bin/modprobe" rdma_ucm || log "rdma_ucm not loaded (no /dev/infiniband/rdma_cm)"
    rdma link add "$MALT_GUEST_RXE_NAME" type rxe netdev "$MALT_GUEST_RXE_NETDEV" ||
        fail "rdma link add $MALT_GUEST_RXE_NAME type rxe netdev $MALT_GUEST_RXE_NETDEV failed"
    state=/sys/class/infiniband/$MALT_GUEST_RXE_NAME/ports/1/state
    deadline=$((SECONDS + 20))
    until grep -qs ACTIVE "$state"; do
        ((SECONDS < deadline)) || fail "$MALT_GUEST_RXE_NAME port 1 not ACTIVE after 20 s: $(cat "$state" 2>/dev/null)"
        sleep 0.1
    done
    log "$MALT_GUEST_RXE_NAME on $MALT_GUEST_RXE_NETDEV is ACTIVE"
fi

ulimit -l unlimited
ulimit -c 0

out='' err=''
for port in /sys/class/virtio-ports/*; do
    case $(cat "$port/name" 2>/dev/null) in
    malt.stdout) out=/dev/${port##*/} ;;
    malt.stderr) err=/dev/${port##*/} ;;
    esac
done
[[ -n $out && -n $err ]] || fail "virtio-serial ports malt.stdout/malt.stderr not found"
[[ -c $out && -c $err ]] || fail "device nodes $out/$err missing"

log "running the command"
trap - ERR
set +e
env -i /bin/bash "$ctl/run.sh" </dev/null >"$out" 2>"$err"
rc=$?
printf '%s\n' "$rc" >"$ctl/rc.tmp" && mv -f "$ctl/rc.tmp" "$ctl/rc"
power_off
