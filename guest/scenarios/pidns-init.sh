# 2. A PID namespace init, as a container's first process. Without setsid its session leader
#    is outside the namespace and CRIU refuses ("A session leader of X(1) is outside of its
#    pid namespace"); with setsid (what the patched kata-agent does) dump and restore work.
#    The setsid case migrates.
. "$HERE/scenario-lib.sh"

pidns_target() { # setsid|nosetsid -> pid of the namespace's init (host view); fails (ran_out) without one
	if [ "$1" = setsid ]; then
		start_session unshare --pid --fork setsid sh -c 'while :; do sleep 0.5; done' > "$WORK/outer" || return 1
	else
		# No setsid inside: the init inherits the session of the process that made it.
		unshare --pid --fork sh -c 'while :; do sleep 0.5; done' < /dev/null > /dev/null 2>&1 &
		echo $! > "$WORK/outer"
	fi
	ns_init "$(cat "$WORK/outer")"
}

no_setsid() {
	init=$(pidns_target nosetsid) || { kill_tree "$(cat "$WORK/outer")"; case_end FAIL "no pidns init appeared: $(last_wait)" error; return 1; }
	note "pidns init $init: $(grep -E '^(NSpid|NSsid)' /proc/$init/status | tr '\n' ' ')"
	criu_run dump dump -t "$init" -D "$IMG"
	msg=$(err_of dump)
	if [ $RC -ne 0 ] && grep -q "is outside of its pid namespace" "$CDIR/dump.log"; then
		case_end PASS "reproduced: $msg" error
	elif [ $RC -eq 0 ]; then
		case_end FAIL "dumped although the init has no session of its own (expected the session leader error)" success
	else
		case_end FAIL "dump failed differently: $msg" "$(outcome_of $RC)"
	fi
	kill_tree "$(cat "$WORK/outer")"
	return 1 # a dump-only case: nothing to restore
}

dump_setsid() {
	init=$(pidns_target setsid) || { kill_tree "$(cat "$WORK/outer")"; case_end FAIL "no pidns init appeared: $(last_wait)" error; return 1; }
	criu_run dump dump -t "$init" -D "$IMG" || { kill_tree "$(cat "$WORK/outer")"; case_end FAIL "dump: $(err_of dump)" "$(outcome_of $RC)"; return 1; }
	kill_tree_wait "$(cat "$WORK/outer")" || { case_end FAIL "dumped, but the namespace outlived its kill: $(last_wait)" error; return 1; }
	carry init
}

restore_setsid() {
	criu_run restore restore -D "$IMG" -d || { case_end FAIL "restore: $(err_of restore)" "$(outcome_of $RC)"; return 1; }
	new=$(restored_pid)
	if [ -n "$new" ] && alive "$new" && grep -q '^NSpid:.*[[:space:]]1$' /proc/"$new"/status; then
		case_end PASS "pidns init dumped and restored (host pid $init -> $new, pid 1 inside)" success
	else
		case_end FAIL "restore returned 0 but the restored init (${new:-no pidfile}) is not running as pid 1 of its namespace" error
	fi
	kill_tree "$new"
}

run_case no-setsid no_setsid true
run_case setsid dump_setsid restore_setsid
