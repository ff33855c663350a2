# 4. The target sits in a frozen cgroup (as after a runtime's pause). Dump it without
#    --freeze-cgroup, then with it, and record what really happens: a hang (caught by the
#    timeout, with /proc/<pid>/{wchan,stack} and cgroup.events), an error, or success. The
#    case with --freeze-cgroup migrates.
. "$HERE/scenario-lib.sh"
CG=/sys/fs/cgroup/crg-$SCENARIO
frozen_target() { # prints the target's pid once its cgroup is frozen; fails (ran_out) if it is not in 5 s
	rmdir "$CG" 2>/dev/null; mkdir -p "$CG"
	# The target moves itself into the cgroup before it forks: a child forked before a move from
	# outside stays in the old cgroup, and CRIU --freeze-cgroup then finds a child it never
	# seized ("Unseizable non-zombie ... err -1/10"). The move from outside makes sure it is in.
	_ft_pid=$(start_session sh -c 'echo $$ > "$1/cgroup.procs"; while :; do sleep 0.2; done' sh "$CG") || return 1
	echo "$_ft_pid" > "$CG/cgroup.procs"
	echo 1 > "$CG/cgroup.freeze"
	deadline_cs _ft_end 5
	until [ "$(frozen_state)" = 1 ]; do
		past "$_ft_end" && { ran_out "$CG to be frozen (cgroup.events: $(tr '\n' ' ' < "$CG/cgroup.events"))" 5; cleanup "$_ft_pid"; return 1; }
		sleep 0.025
	done
	echo "$_ft_pid"
}
frozen_state() { while read -r _fs_k _fs_v; do [ "$_fs_k" = frozen ] && echo "$_fs_v"; done < "$CG/cgroup.events"; }
# After the verdict: a tree that outlives its kill is named in out.log (kill_tree_wait), no more.
cleanup() { echo 0 > "$CG/cgroup.freeze" 2>/dev/null; kill_tree_wait "$1"; rmdir "$CG" 2>/dev/null; }

without_freeze() {
	# The same dump of an unfrozen target first: a hang is called at 20 times that (at least 2 s,
	# at most the step timeout), not after a fixed wait. "That" is the dump as CRIU's own log
	# times it (its last timestamp): the wall clock adds our process start-up, which TCG makes
	# noisy (0.33-0.6 s measured around a 0.22 s dump), and the hang call moved with it.
	pid=$(start_session sh -c 'while :; do sleep 0.2; done') || { case_end FAIL "the unfrozen target did not start: $(last_wait)" error; return 1; }
	uptime_cs t0
	criu_run baseline dump -t "$pid" -D "$IMG" --leave-running
	seconds_since wall "$t0"
	uptime_cs t1
	base_rc=$RC
	# A baseline target that outlives its kill is in no cgroup of ours: out.log names it, the case goes on.
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
	pid=$(frozen_target) || { case_end FAIL "no frozen target: $(last_wait)" error; return 1; }
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
	pid=$(frozen_target) || { case_end FAIL "no frozen target: $(last_wait)" error; return 1; }
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
