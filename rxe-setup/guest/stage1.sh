#!/bin/sh
# /init of the soft-RoCE guest's initramfs (runs under busybox).
#
# Loads the virtio and 9p modules packed next to it, mounts the host's root
# file system (9p tag "hostroot", read-only) on /newroot, a tmpfs on
# /newroot/run, the per-run control share (tag "ctl") on
# /newroot/run/malt-rxe/ctl, and hands over to the host's bash running
# ctl/stage2.sh. Any failure powers the guest off; the host then reports the
# missing exit status together with the console log.
set -eu

/bin/busybox --install -s /bin
export PATH=/bin

mount -t devtmpfs devtmpfs /dev
exec 0</dev/console 1>/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys

fail() {
    echo "malt-rxe stage1: $*" >&2
    poweroff -f
    sleep 60
}

while read -r mod; do
    [ -n "$mod" ] || continue
    insmod "/lib/modules/$mod" || fail "insmod $mod failed"
done </lib/modules/order

msize=262144
ninep="trans=virtio,version=9p2000.L,msize=$msize"
mkdir -p /newroot
mount -t 9p -o "ro,$ninep,cache=loose" hostroot /newroot || fail "cannot mount the host root (9p tag hostroot)"
[ -d /newroot/run ] || fail "host root has no /run directory"
mount -t tmpfs -o mode=0755,size=64m run /newroot/run
mkdir -p /newroot/run/malt-rxe/ctl /newroot/run/malt-rxe/bin
mount -t 9p -o "$ninep,cache=none" ctl /newroot/run/malt-rxe/ctl || fail "cannot mount the control share (9p tag ctl)"
cp /bin/busybox /newroot/run/malt-rxe/bin/busybox
[ -x /newroot/bin/bash ] || fail "host root has no /bin/bash"

mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
exec switch_root /newroot /bin/bash /run/malt-rxe/ctl/stage2.sh
