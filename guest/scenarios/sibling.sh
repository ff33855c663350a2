# 3. CRIU as a sibling of its target (both children of one parent), as an agent starts it:
#    evidence on the claim that CRIU cannot wait4() on a task that is not its child. Migrates.
. "$HERE/scenario-lib.sh"
state=$WORK/tick

dump_sibling() {
	# One parent starts the target, then (once it ticks) CRIU: siblings. The parent writes both
	# pids down.
	rm -f "$state" "$WORK/no-tick"
	sh -c "
		setsid sh -c 'while :; do date +%s.%N > $state.new; mv $state.new $state; sleep 0.1; done' < /dev/null > /dev/null 2>&1 &
		target=\$!
		echo \$target > $WORK/target
		i=0; while [ ! -s $state ] && [ \$i -lt 200 ]; do sleep 0.025; i=\$((i + 1)); done
		# No tick: the dump would catch a target that has not started; say so instead.
		[ -s $state ] || { echo \"the target's first tick in $state (200 polls)\" > $WORK/no-tick; exit 1; }
		echo \$\$ > $WORK/parent
		$CRIU_DUMP dump -t \$target -D $IMG -v4 -o $CDIR/dump.log &
		echo \$! > $WORK/criu
		wait \$!
	" < /dev/null >> "$CDIR/out.log" 2>&1 &
	parent_pid=$!
	DIAG_PIDS=$parent_pid
	deadline_cs end "$STEP_TIMEOUT"
	while alive "$parent_pid" && ! past "$end"; do sleep 0.025; done
	if alive "$parent_pid"; then
		proc_diag "$parent_pid" "$(cat "$WORK/target")" >> "$CDIR/diag.txt"; kill_tree "$parent_pid"; RC=124
		ran_out "the sibling dump (its parent $parent_pid) to end" "$STEP_TIMEOUT"
	else
		wait "$parent_pid"; RC=$?
	fi
	target=$(cat "$WORK/target")
	note "parent $(cat "$WORK/parent" 2>/dev/null) started target $target and criu $(cat "$WORK/criu" 2>/dev/null) as siblings: dump rc=$RC"
	if [ -s "$WORK/no-tick" ]; then
		seconds_since waited "$CASE_T0"
		ran_out "$(cat "$WORK/no-tick")" "$waited"
		kill_tree "$target"; case_end FAIL "sibling dump not started: $(last_wait)" error; return 1
	fi
	[ $RC -eq 124 ] && { kill_tree "$target"; case_end FAIL "sibling dump: $(last_wait)" hang; return 1; }
	[ $RC -eq 0 ] || { kill_tree "$target"; case_end FAIL "sibling dump: $(err_of dump)" "$(outcome_of $RC)"; return 1; }
	carry target
	carry_dir "$WORK"
}

restore_sibling() {
	criu_run restore restore -D "$IMG" -d || { case_end FAIL "restore: $(err_of restore)" "$(outcome_of $RC)"; return 1; }
	# The tick is written to a new file and renamed: a reader never sees it half written.
	a=$(cat "$state")
	# A wait that runs out is judged below ($a = $b: not ticking); out.log has its message.
	wait_changed "$state" "$a" 5
	b=$(cat "$state")
	if alive "$target" && [ -n "$a" ] && [ "$a" != "$b" ]; then case_end PASS "CRIU dumped its sibling $target and restored it: no wait4() problem" success
	elif alive "$target"; then case_end FAIL "restored sibling $target is alive but not ticking ($a, then $b)" error
	else case_end FAIL "restored sibling $target is not running" error; fi
	kill_tree "$target"
}

run_case dump-restore dump_sibling restore_sibling
