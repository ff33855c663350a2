# 6. A process registered for private expedited membarrier: is it still registered after a
#    restore? (3.17.1 loses the registration: membarrier() then fails with EPERM.) Migrates.
. "$HERE/scenario-lib.sh"
st=$WORK/mb
probe() { rm -f "$st/result"; : > "$st/probe"; wait_for "$st/result" 5 && cat "$st/result"; }

dump_membarrier() {
	mkdir -p "$st"; rm -f "$st"/*
	pid=$(start_session crg-membarrier "$st") || { case_end FAIL "the membarrier process did not start: $(last_wait)" error; return 1; }
	# Registered (STATEDIR/ready) or refused (STATEDIR/error, and it exits): no need to wait more.
	uptime_cs t0
	i=0; while [ ! -e "$st/ready" ] && [ ! -e "$st/error" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
	if [ ! -e "$st/ready" ] && [ ! -e "$st/error" ]; then
		kill_tree "$pid"
		seconds_since t0 "$t0"
		ran_out "$st/ready or $st/error from crg-membarrier" "$t0"
		case_end FAIL "the membarrier process did not answer: $(last_wait)" error
		return 1
	fi
	if [ -e "$st/error" ] || ! before=$(probe); then
		kill_tree "$pid"
		# A kernel without membarrier() has no registration to keep: not applicable, not a failure.
		if [ "$(cat "$st/error" 2>/dev/null)" = ENOSYS ]; then case_end SKIP "the kernel has no membarrier() (ENOSYS): nothing to register" ""
		else case_end FAIL "the membarrier process did not answer: $(cat "$st/error" 2>/dev/null || echo 'no reason given')" error; fi
		return 1
	fi
	note "before dump: $before"
	criu_run dump dump -t "$pid" -D "$IMG" || { kill_tree "$pid"; case_end FAIL "dump: $(err_of dump)" "$(outcome_of $RC)"; return 1; }
	carry pid before
	carry_dir "$st"
}

restore_membarrier() {
	rm -f "$st/probe" "$st/result"
	criu_run restore restore -D "$IMG" -d || { case_end FAIL "restore: $(err_of restore)" "$(outcome_of $RC)"; return 1; }
	after=$(probe) || after="no answer"
	note "after restore: $after"
	if [ "$before" = ok ] && [ "$after" = ok ]; then case_end PASS "still registered after restore" success
	else case_end FAIL "registration lost: membarrier(PRIVATE_EXPEDITED) before dump: $before, after restore: $after" error; fi
	kill_tree "$pid"
}

run_case registration dump_membarrier restore_membarrier
