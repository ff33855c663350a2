#!/bin/sh
# CRIU action script for the kata-container scenario: the mounts the dump skipped
# (--skip-mnt) are not in the image, so the restore makes them again in the restored
# container's mount namespace, as a Kata runtime would from its sandbox. At
# post-setup-namespaces: the namespace's mounts are restored by then (at setup-namespaces they
# are not yet, and what is mounted there is lost), the tasks not yet. KATA_SANDBOX holds
# hostname, hosts and resolv.conf.
[ "$CRTOOLS_SCRIPT_ACTION" = "${KATA_REMOUNT_AT:-post-setup-namespaces}" ] || exit 0
echo "kata-mounts: $CRTOOLS_SCRIPT_ACTION, init $CRTOOLS_INIT_PID"
exec nsenter -t "$CRTOOLS_INIT_PID" -m sh -ec "
	for f in hostname hosts resolv.conf; do mount --bind '$KATA_SANDBOX'/\$f /etc/\$f; done
	mount -t tmpfs -o size=8m,mode=1777 shm /dev/shm
"
