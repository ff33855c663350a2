# 7. An established TCP connection on loopback, dumped and restored with --tcp-established:
#    the connection still carries data after the restore. Migrates.
. "$HERE/scenario-lib.sh"
st=$WORK/tcp

dump_tcp() {
	mkdir -p "$st"; rm -f "$st"/*
	pid=$(start_session crg-tcp 47011 "$st") || { case_end FAIL "crg-tcp did not start: $(last_wait)" error; return 1; }
	wait_for "$st/count" 10 || { kill_tree "$pid"; case_end FAIL "no connection came up: $(last_wait)" error; return 1; }
	criu_run dump dump -t "$pid" -D "$IMG" --tcp-established || { kill_tree "$pid"; case_end FAIL "dump: $(err_of dump)" "$(outcome_of $RC)"; return 1; }
	at_dump=$(counter "$st/count")
	carry pid at_dump
	carry_dir "$st"
}

restore_tcp() {
	criu_run restore restore -D "$IMG" -d --tcp-established || { case_end FAIL "restore: $(err_of restore)" "$(outcome_of $RC)"; return 1; }
	wait_value "$st/count" "v > $at_dump + 3" 5 || { case_end FAIL "connection dead after restore: $(last_wait)" error; kill_tree "$pid"; return 1; }
	after=$(counter "$st/count")
	note "count at dump $at_dump, after restore $after"
	if alive "$pid" && [ "$after" -gt "$at_dump" ]; then case_end PASS "connection carries data after restore ($at_dump -> $after)" success
	else case_end FAIL "connection dead after restore (count $at_dump -> $after, alive=$(alive "$pid" && echo yes || echo no))" error; fi
	kill_tree "$pid"
}

run_case loopback dump_tcp restore_tcp
