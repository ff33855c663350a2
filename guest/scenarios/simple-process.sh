# 1. A simple process: dump with --leave-running, kill it, restore; it goes on counting from
#    the value it had at the dump, not from zero and not from where it was killed. Each step
#    waits for the counter to move (an event), not for a fixed time. Migrates.
. "$HERE/scenario-lib.sh"
state=$WORK/count

dump_simple() {
	pid=$(start_session sh -c "i=0; while :; do i=\$((i+1)); printf '%-20s\\n' \$i | dd of=$state conv=notrunc status=none; sleep 0.1; done") || { case_end FAIL "the counter did not start: $(last_wait)" error; return 1; }
	wait_value "$state" "v >= 2" 10 || { kill_tree "$pid"; case_end FAIL "the counter did not start: $(last_wait)" error; return 1; }
	criu_run dump dump -t "$pid" -D "$IMG" --leave-running || { kill_tree "$pid"; case_end FAIL "dump: $(err_of dump)" "$(outcome_of $RC)"; return 1; }
	at_dump=$(counter "$state")
	# Kill it once it has counted on past the dump, so a restore from the dump is told apart.
	wait_value "$state" "v >= $((at_dump + 3))" 10 || { kill_tree "$pid"; case_end FAIL "dumped, but the original stopped counting (--leave-running): $(last_wait)" error; return 1; }
	before_kill=$(counter "$state")
	kill_tree_wait "$pid" || { case_end FAIL "dumped, but the original outlived its kill: $(last_wait)" error; return 1; }
	note "count at dump ~$at_dump, before kill $before_kill"
	carry pid at_dump before_kill
	carry_dir "$WORK"
}

restore_simple() {
	criu_run restore restore -D "$IMG" -d || { case_end FAIL "restore: $(err_of restore)" "$(outcome_of $RC)"; return 1; }
	# The restored counter writes values below the kill's, then keeps counting.
	wait_value "$state" "v < $before_kill" 10 || { case_end FAIL "restored, but the counter did not go back below the kill's $before_kill: $(last_wait)" error; kill_tree "$pid"; return 1; }
	after=$(counter "$state")
	wait_value "$state" "v > $after" 10 || { case_end FAIL "restored, but the counter stopped at $after: $(last_wait)" error; kill_tree "$pid"; return 1; }
	later=$(counter "$state")
	note "after restore $after, then $later"
	if alive "$pid" && [ "$after" -lt "$before_kill" ] && [ "$later" -gt "$after" ]; then
		case_end PASS "restored pid $pid counts on from the dump ($at_dump -> $after -> $later; killed at $before_kill)" success
	else
		case_end FAIL "after restore: alive=$(alive "$pid" && echo yes || echo no), counts $at_dump/$before_kill/$after/$later" error
	fi
	kill_tree "$pid"
}

run_case dump-restore dump_simple restore_simple
