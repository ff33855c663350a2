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
	deadline_cs end 5
	until [ "$(frozen_state)" = 1 ] || past "$end"; do sleep 0.025; done
	echo "$pid"
}
frozen_state() { while read -r k v; do [ "$k" = frozen ] && echo "$v"; done < "$CG/cgroup.events"; }
cleanup() { echo 0 > "$CG/cgroup.freeze" 2>/dev/null; kill_tree_wait "$1"; rmdir "$CG" 2>/dev/null; }

without_freeze() {
	# The same dump of an unfrozen target first: a hang is called at 20 times that (at least 2 s,
	# at most the step timeout), not after a fixed wait. "That" is the dump as CRIU's own log
	# times it (its last timestamp): the wall clock adds our process start-up, which TCG makes
	# noisy (0.33-0.6 s measured around a 0.22 s dump), and the hang call moved with it.
	pid=$(start_session sh -c 'while :; do sleep 0.2; done')
	uptime_cs t0
	criu_run baseline dump -t "$pid" -D "$IMG" --leave-running
	seconds_since wall "$t0"
	uptime_cs t1
	base_rc=$RC
	kill_tree_wait "$pid"
	rm -rf "$IMG"; mkdir -p "$IMG"
	base_cs=$(awk -F'[()]' '/^\([0-9]+\.[0-9]+\)/ { t = $2 } END { if (t != "") printf "%d\n", t * 100 + 0.5 }' "$CDIR/baseline.log" 2>/dev/null)
	[ -n "$base_cs" ] || base_cs=$((t1 - t0))
	base=$((base_cs / 100)).$((base_cs % 100 / 10))$((base_cs % 10))
	# 20 times the baseline, in whole seconds rounded up, within [2, STEP_TIMEOUT].
	limit=$(( (base_cs * 20 + 99) / 100 ))
	[ "$limit" -lt 2 ] && limit=2
	[ "$limit" -gt "$STEP_TIMEOUT" ] && limit=$STEP_TIMEOUT
	[ "$base_rc" -eq 0 ] || limit=$STEP_TIMEOUT
	note "unfrozen dump: rc=$base_rc in ${base}s by CRIU's clock (${wall}s wall); hang called after ${limit}s"
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
