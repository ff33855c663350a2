# 5. A /dev/shm-like tmpfs in a container's mount namespace that is a slave of a host mount:
#    CRIU refuses it ("has unreachable sharing") unless told the master is external
#    (--external mnt[]:m, or --enable-external-masters with --external mnt[] on older CRIU).
#    The external-master case migrates.
. "$HERE/scenario-lib.sh"
SRC=/run/cr-guest/shm-src
mkdir -p "$SRC"
mountpoint -q "$SRC" || mount -t tmpfs -o size=8m crg-shm "$SRC"
mount --make-shared "$SRC"
masters_flags() { if [ "${1:-mnt}" = mnt ]; then echo "--external mnt[]:m"; else echo "--enable-external-masters --external mnt[]"; fi; }
# Each half in its own CRIU's syntax (an in-place upgrade dumps with one and restores with another).
dump_flags=$(masters_flags "${EXTERNAL_MASTERS_SYNTAX_DUMP:-$EXTERNAL_MASTERS_SYNTAX}")
flags=$(masters_flags "$EXTERNAL_MASTERS_SYNTAX")

container() { # a process in new mount+pid namespaces whose /dev/shm is a slave of $SRC
	# The namespace's init makes itself a session leader (as the patched agent does), so the
	# only thing CRIU can object to is the mount.
	start_session unshare --mount --propagation slave --pid --fork setsid sh -c "
		mount --bind $SRC /dev/shm
		exec < /dev/null > /dev/null 2>&1
		while :; do sleep 0.5; done
	" > "$WORK/outer" || return 1
	_ct_init=$(ns_init "$(cat "$WORK/outer")") || return 1
	# Until the bind mount is there (the init's shell makes it after it starts).
	deadline_cs _ct_end 5
	until grep -q " /dev/shm .* - tmpfs crg-shm " /proc/"$_ct_init"/mountinfo 2>/dev/null; do
		past "$_ct_end" && { ran_out "the crg-shm tmpfs on /dev/shm in the mount namespace of pid $_ct_init" 5; return 1; }
		sleep 0.025
	done
	echo "$_ct_init"
}

no_flags() {
	init=$(container) || { kill_tree "$(cat "$WORK/outer")"; case_end FAIL "no container with its /dev/shm mount appeared: $(last_wait)" error; return 1; }
	note "propagation inside: $(grep ' /dev/shm ' /proc/$init/mountinfo)"
	criu_run dump dump -t "$init" -D "$IMG"
	if [ $RC -ne 0 ] && grep -q "has unreachable sharing" "$CDIR/dump.log"; then case_end PASS "reproduced: $(err_of dump)" error
	elif [ $RC -eq 0 ]; then case_end FAIL "dumped without flags (expected 'has unreachable sharing')" success
	else case_end FAIL "dump failed differently: $(err_of dump)" "$(outcome_of $RC)"; fi
	kill_tree "$(cat "$WORK/outer")"
	return 1 # a dump-only case: nothing to restore
}

dump_external() {
	init=$(container) || { kill_tree "$(cat "$WORK/outer")"; case_end FAIL "no container with its /dev/shm mount appeared: $(last_wait)" error; return 1; }
	# shellcheck disable=SC2086
	criu_run dump dump -t "$init" -D "$IMG" $dump_flags || { kill_tree "$(cat "$WORK/outer")"; case_end FAIL "dump with $dump_flags: $(err_of dump)" "$(outcome_of $RC)"; return 1; }
	kill_tree_wait "$(cat "$WORK/outer")" || { case_end FAIL "dumped, but the container outlived its kill: $(last_wait)" error; return 1; }
}

restore_external() {
	# Restoring a mount namespace needs --root (mount-v2.c: "The --root option is required to
	# restore a mount namespace"); the container's root is the guest's /. Without it 4.1.1 does
	# not say so but dies in a BUG_ON (mount.c:48, service_mountpoint) while cleaning mounts.
	# shellcheck disable=SC2086
	criu_run restore restore -D "$IMG" -d $flags --root /
	new=$(restored_pid)
	if [ $RC -eq 0 ] && [ -n "$new" ] && alive "$new"; then case_end PASS "dumped with $dump_flags and restored with $flags" success
	else case_end FAIL "dumped with $dump_flags; restore with $flags: $(err_of restore)" "$(outcome_of $RC)"; fi
	kill_tree "$new"
}

run_case no-flags no_flags true
run_case external-master dump_external restore_external
