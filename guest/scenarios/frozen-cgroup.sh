# 4. The target sits in a frozen cgroup (as after a runtime's pause). Dump it without
#    --freeze-cgroup, then with it, and record what really happens: a hang (caught by the
#    timeout, with /proc/<pid>/{wchan,stack} and cgroup.events), an error, or success. The
#    case with --freeze-cgroup migrates.
. "$HERE/scenario-lib.sh"
CG=/sys/fs/cgroup/crg-$SCENARIO
frozen_target() {
	rmdir "$CG" 2>/dev/null; mkdir -p "$CG"
	# The target moves itself into the cgroup before it forks: a child forked before a move from
	# outside stays in the old cgroup, and CRIU --freeze-cgroup then finds a child it never
	# seized ("Unseizable non-zombie ... err -1/10"). The move from outside makes sure it is in.
	pid=$(start_session sh -c 'echo $$ > "$1/cgroup.procs"; while :; do sleep 0.2; done' sh "$CG")
	echo "$pid" > "$CG/cgroup.procs"
	echo 1 > "$CG/cgroup.freeze"
	i=0; while ! grep -q '^frozen 1' "$CG/cgroup.events" && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
	echo "$pid"
}
cleanup() { echo 0 > "$CG/cgroup.freeze" 2>/dev/null; kill_tree "$1"; sleep 0.2; rmdir "$CG" 2>/dev/null; }

without_freeze() {
	# The same dump of an unfrozen target first: a hang is called at 20 times that (at least 2 s,
	# at most the step timeout), not after a fixed wait.
	pid=$(start_session sh -c 'while :; do sleep 0.2; done')
	t0=$(now)
	criu_run baseline dump -t "$pid" -D "$IMG" --leave-running
	base=$(echo "$(now) $t0" | awk '{printf "%.2f", $1 - $2}')
	base_rc=$RC
	kill_tree "$pid"
	rm -rf "$IMG"; mkdir -p "$IMG"
	limit=$(echo "$base $STEP_TIMEOUT" | awk '{l = int($1 * 20 + 0.999); if (l < 2) l = 2; if (l > $2) l = $2; print l}')
	[ "$base_rc" -eq 0 ] || limit=$STEP_TIMEOUT
	note "unfrozen dump: rc=$base_rc in ${base}s; hang called after ${limit}s"
	pid=$(frozen_target)
	note "target $pid in $CG: $(cat "$CG/cgroup.events" | tr '\n' ' ')"
	step=$STEP_TIMEOUT; STEP_TIMEOUT=$limit
	DIAG_PIDS=$pid DIAG_CGROUP=$CG criu_run dump dump -t "$pid" -D "$IMG"
	STEP_TIMEOUT=$step
	case $RC in
	0) case_end PASS "dump of a frozen task succeeded without --freeze-cgroup" success ;;
	124) case_end FAIL "hang: dump did not finish in ${limit}s, 20x the ${base}s of the same dump unfrozen (diagnostics: wchan/stack of CRIU and the target, cgroup.events)" hang ;;
	*) case_end FAIL "error: $(err_of dump)" error ;;
	esac
	cleanup "$pid"
	return 1 # observed only: nothing to restore
}

dump_with_freeze() {
	pid=$(frozen_target)
	DIAG_PIDS=$pid DIAG_CGROUP=$CG criu_run dump dump -t "$pid" -D "$IMG" --freeze-cgroup "$CG"
	if [ $RC -ne 0 ]; then
		[ $RC -eq 124 ] && case_end FAIL "hang with --freeze-cgroup (diagnostics recorded)" hang || case_end FAIL "error: $(err_of dump)" error
		cleanup "$pid"
		return 1
	fi
	echo 0 > "$CG/cgroup.freeze" 2>/dev/null
	carry pid
}

restore_with_freeze() {
	# In boot B the cgroup is made again, thawed, as a runtime would before restoring into it.
	mkdir -p "$CG"; echo 0 > "$CG/cgroup.freeze" 2>/dev/null
	criu_run restore restore -D "$IMG" -d
	if [ $RC -eq 0 ] && alive "$pid"; then case_end PASS "dumped with --freeze-cgroup and restored" success
	else case_end FAIL "dumped with --freeze-cgroup, restore: $(err_of restore)" "$(outcome_of $RC)"; fi
	cleanup "$pid"
}

run_case without-freeze-cgroup without_freeze true
run_case with-freeze-cgroup dump_with_freeze restore_with_freeze
