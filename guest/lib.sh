# cr-guest guest library (POSIX sh): the results disk protocol, bounded commands with hang
# diagnostics, and per-test records. Sourced by init, run-tests and the scenarios.
#
# Variable names, in every file of guest/. A POSIX shell has one namespace for variables: what
# a function sets is everyone's, and a scenario and both libraries share one shell. `local` is
# no cure: POSIX lacks it, and where it exists (dash, busybox ash) it scopes dynamically, so a
# function still sees and sets the locals of whoever called it. Hence:
#   - A function's own variables are named _<p>_<what>, <p> a prefix of that function alone
#     (run_bounded: _rb_limit; start_session: _ses_pid). Check a new prefix is free with grep.
#   - What a function hands back goes into a variable its caller names (uptime_cs VAR) or an
#     UPPERCASE global that its comment names (RC, SEEN, KILLED_PIDS; CASE, CDIR, IMG).
#   - Unprefixed lowercase names belong to a script's top level (init, run-tests, a scenario)
#     and to a scenario's halves, which share its case's state through them (and `carry` it to
#     a migration's boot B): no library function sets one.
#
# Waits. Every wait has a deadline. One that runs out says what it waited for (ran_out: on
# stderr, and in the case's out.log) and returns non-zero; its caller fails the case with that
# message (last_wait) rather than going on with what it did not get.

# The contract shared with the host (markers, results disk layout), generated into the image
# from scripts/lib/guest-contract.ts: RESULTS_MARKER, RESULTS_DONE_MARKER, END_MARKER,
# STARTED_MARKER, INPUT_OFFSET_MIB, OUTPUT_OFFSET_MIB.
. "${CRG_CONTRACT_ENV:-/usr/libexec/cr-guest/contract.env}"

find_disk() { # marker: the block device whose first sector starts with it
	for _fd_sys in /sys/block/*; do
		_fd_dev=/dev/${_fd_sys##*/}
		[ -b "$_fd_dev" ] || continue
		# One program per disk: the shell drops the NUL bytes of a disk that is not ours.
		_fd_head=$(head -c ${#1} "$_fd_dev" 2>/dev/null)
		if [ "$_fd_head" = "$1" ]; then echo "$_fd_dev"; return 0; fi
	done
	return 1
}

find_results_disk() { find_disk "$RESULTS_MARKER"; }

# The transfer disk of a migration (see scripts/lib/guest-contract.ts).
write_transfer() { # dev dir
	tar -czf /run/cr-guest/transfer.tgz -C "$2" . || return 1
	_wtr_size=$(stat -c %s /run/cr-guest/transfer.tgz)
	_wtr_sum=$(sha256sum /run/cr-guest/transfer.tgz | cut -d' ' -f1)
	dd if=/run/cr-guest/transfer.tgz of="$1" bs=1M seek=$TRANSFER_OFFSET_MIB conv=notrunc,fsync 2>/dev/null || return 1
	rm -f /run/cr-guest/transfer.tgz
	printf '%s size=%s sha256=%s\n' "$TRANSFER_DONE_MARKER" "$_wtr_size" "$_wtr_sum" | dd of="$1" bs=512 seek=1 conv=notrunc,fsync 2>/dev/null
}

read_transfer() { # dev dir: fails with the reason on stdout
	_rtr_rec=$(dd if="$1" bs=512 skip=1 count=1 2>/dev/null | tr -d '\000' | head -n 1)
	_rtr_size=$(echo "$_rtr_rec" | sed -n "s/^$TRANSFER_DONE_MARKER size=\([0-9]*\) sha256=.*/\1/p")
	_rtr_sum=$(echo "$_rtr_rec" | sed -n "s/^$TRANSFER_DONE_MARKER size=[0-9]* sha256=\([0-9a-f]*\)$/\1/p")
	[ -n "$_rtr_size" ] && [ -n "$_rtr_sum" ] || { echo "no transfer record on $1"; return 1; }
	dd if="$1" bs=1M skip=$TRANSFER_OFFSET_MIB count="$_rtr_size" iflag=count_bytes 2>/dev/null > /run/cr-guest/transfer.tgz
	_rtr_got=$(sha256sum /run/cr-guest/transfer.tgz | cut -d' ' -f1)
	[ "$_rtr_got" = "$_rtr_sum" ] || { echo "transfer on $1 is corrupt: sha256 $_rtr_got, record says $_rtr_sum"; return 1; }
	mkdir -p "$2" && tar -xzf /run/cr-guest/transfer.tgz -C "$2" || { echo "transfer on $1 does not unpack"; return 1; }
	rm -f /run/cr-guest/transfer.tgz
}

read_input() { # dev dir
	# The header is two text lines (the marker, in=SIZE): read with builtins.
	{ read -r _ri_marker; read -r _ri_in; } < "$1" 2>/dev/null
	[ "$_ri_marker" = "$RESULTS_MARKER" ] || return 1
	_ri_size=${_ri_in#in=}
	case $_ri_size in '' | *[!0-9]*) return 1 ;; esac
	[ "$_ri_size" -gt 0 ] || return 1
	dd if="$1" bs=1M skip=$INPUT_OFFSET_MIB count="$_ri_size" iflag=count_bytes 2>/dev/null | tar -xzf - -C "$2"
}

write_output() { # dev dir
	tar -czf /run/cr-guest/out.tgz -C "$2" . || return 1
	_wo_size=$(stat -c %s /run/cr-guest/out.tgz)
	dd if=/run/cr-guest/out.tgz of="$1" bs=1M seek=$OUTPUT_OFFSET_MIB conv=notrunc,fsync 2>/dev/null || return 1
	printf '%s out=%s\n' "$RESULTS_DONE_MARKER" "$_wo_size" | dd of="$1" bs=512 seek=1 conv=notrunc,fsync 2>/dev/null
}

# The uptime in centiseconds into the variable named $1, and the seconds since such a reading
# into the variable named $1 ("3.07"): builtins only, as a fork costs tens of milliseconds
# under TCG and every test took a dozen of them for its bookkeeping.
uptime_cs() { read -r _uc_up _uc_rest < /proc/uptime; _uc_i=${_uc_up%.*}; _uc_f=${_uc_up#*.}; eval "$1=\$((_uc_i * 100 + 1$_uc_f - 100))"; }
seconds_since() { # var start_cs
	uptime_cs _ss_now
	_ss_d=$((_ss_now - $2)); _ss_c=$((_ss_d % 100)); [ "$_ss_c" -lt 10 ] && _ss_c=0$_ss_c
	eval "$1=$((_ss_d / 100)).$_ss_c"
}

# A clock mark for the host's per-phase clock (the init prefixes it with "cr-guest: ").
mark() { read -r _mk_up _mk_rest < /proc/uptime; echo "clock $1 $_mk_up"; }

# Every process under a pid (inclusive), from /proc: no pstree needed.
tree_pids() {
	echo "$1"
	# The list is expanded before the loop starts: the recursion reusing _tp_child is harmless.
	for _tp_child in $(cat /proc/"$1"/task/*/children 2>/dev/null); do tree_pids "$_tp_child"; done
}

# kill_tree PID: SIGKILL for the whole tree. Each process is stopped first, and the tree read
# again until no new one shows up: a stopped process forks no more, while a list read once
# and killed misses what forks in between (a check's child started at the deadline outlived
# it). The killed pids are left in KILLED_PIDS.
kill_tree() {
	KILLED_PIDS=
	_kt_seen=" "
	while :; do
		_kt_new=
		for _kt_p in $(tree_pids "$1"); do
			case $_kt_seen in *" $_kt_p "*) continue ;; esac
			kill -STOP "$_kt_p" 2>/dev/null
			_kt_seen="$_kt_seen$_kt_p "; _kt_new=1
		done
		[ -n "$_kt_new" ] || break
	done
	# The root last: whoever waits for it goes on once everything under it is gone too.
	for _kt_p in $_kt_seen; do [ "$_kt_p" = "$1" ] || kill -9 "$_kt_p" 2>/dev/null; done
	kill -9 "$1" 2>/dev/null
	KILLED_PIDS=$_kt_seen
}

# /proc/<pid>/{wchan,stack,status} of a process tree: where each task is stuck.
proc_diag() { # pid...
	for _pd_root in "$@"; do
		for _pd_p in $(tree_pids "$_pd_root"); do
			[ -d /proc/"$_pd_p" ] || continue
			echo "--- pid $_pd_p: $(tr '\000' ' ' < /proc/"$_pd_p"/cmdline 2>/dev/null)"
			echo "wchan: $(cat /proc/"$_pd_p"/wchan 2>/dev/null)"
			grep -E '^(State|PPid|NSpid|NSsid|TracerPid|SigBlk|SigPnd)' /proc/"$_pd_p"/status 2>/dev/null
			echo "stack:"; cat /proc/"$_pd_p"/stack 2>/dev/null | sed 's/^/  /'
		done
	done
}

# Every process of the guest but kernel threads, one line each (pid ppid state wchan comm),
# read with builtins only (a fork per process would cost seconds under TCG), and the kernel
# stack of a CRIU outside the trees shown: a process that left the tree (reparented when its
# parent died) is often where a hang is.
proc_table() { # pid... (the trees already shown)
	_pt_shown=" $(for _pt_r in "$@"; do tree_pids "$_pt_r"; done | tr '\n' ' ') "
	for _pt_d in /proc/[0-9]*; do
		_pt_stat=; { read -r _pt_stat < "$_pt_d/stat"; } 2>/dev/null || [ -n "$_pt_stat" ] || continue
		_pt_comm=${_pt_stat#*\(}; _pt_comm=${_pt_comm%\)*}
		set -- ${_pt_stat##*\) }
		# kthreadd (pid 2) and its children: kernel threads.
		[ "$2" = 2 ] || [ "$_pt_d" = /proc/2 ] && continue
		_pt_w=; { read -r _pt_w < "$_pt_d/wchan"; } 2>/dev/null
		echo "${_pt_d#/proc/} $2 $1 ${_pt_w:--} $_pt_comm"
		case "$_pt_shown" in *" ${_pt_d#/proc/} "*) continue ;; esac
		case "$_pt_comm" in criu*) sed 's/^/    /' "$_pt_d/stack" 2>/dev/null ;; esac
	done
}

# run_bounded SECONDS DIAGFILE cmd...: runs cmd in the background; at the deadline writes
# diagnostics (the cmd tree, $DIAG_PIDS, $DIAG_CGROUP, $DIAG_LOG) and kills it. Returns the
# command's exit code, or 124 on timeout.
run_bounded() {
	_rb_limit=$1; _rb_diag=$2; shift 2
	rm -f "$_rb_diag.deadline" "$_rb_diag.pid"
	# A watchdog that sleeps once, not a poll: under TCG every fork costs (a 0.1 s poll with
	# its date and awk took a core's worth of time beside every test and scenario). It starts
	# before the command, so nothing of ours forks while the command starts (a CRIU restore
	# asks for exact pids then).
	(
		# A TERM before the sleep's pid is known is remembered, not lost (the sleep would outlive
		# us): the command may end, and the watchdog be stopped, before it got that far.
		# The sleep is stopped with KILL: until the forked child has reset the traps it inherited
		# (the one below among them) a TERM would be caught and lost, and the sleep outlive us.
		_rb_stop=; trap '_rb_stop=1' TERM
		sleep "$_rb_limit" & _rb_spid=$!
		trap 'kill -KILL "$_rb_spid" 2>/dev/null; exit 0' TERM
		[ -n "$_rb_stop" ] && { kill -KILL "$_rb_spid" 2>/dev/null; exit 0; }
		wait "$_rb_spid"
		# From here on the watchdog finishes its work: the command ends as it is killed, and
		# the TERM that follows must not cut the kill short.
		trap '' TERM
		# The command's pid, written right after its fork: on a loaded machine the deadline can
		# come first, and an empty pid would leave the command running past it.
		_rb_bpid=; _rb_n=0
		while { read -r _rb_bpid < "$_rb_diag.pid"; } 2>/dev/null; [ -z "$_rb_bpid" ] && [ "$_rb_n" -lt 1000 ]; do sleep 0.01; _rb_n=$((_rb_n + 1)); done
		: > "$_rb_diag.deadline"
		{
			echo "TIMEOUT after ${_rb_limit}s: $*"
			# A wait that ran out: the deadline stands (124), but nothing of the command is known.
			[ -n "$_rb_bpid" ] || echo "timed out after 10s waiting for the command's pid in $_rb_diag.pid: it is not killed"
			proc_diag "$_rb_bpid" $DIAG_PIDS
			echo "--- every process (pid ppid state wchan command)"
			proc_table "$_rb_bpid" $DIAG_PIDS
			if [ -n "$DIAG_CGROUP" ]; then echo "--- $DIAG_CGROUP/cgroup.events"; cat "$DIAG_CGROUP/cgroup.events" 2>/dev/null; fi
			if [ -n "$DIAG_LOG" ] && [ -f "$DIAG_LOG" ]; then
				echo "--- tail of $DIAG_LOG"; tail -n 30 "$DIAG_LOG"
				echo "--- Error lines"; grep -E 'Error|Warn' "$DIAG_LOG" | tail -n 20
			fi
		} >> "$_rb_diag" 2>&1
		[ -n "$_rb_bpid" ] && kill_tree "$_rb_bpid"
	) &
	_rb_wpid=$!
	"$@" &
	_rb_bpid=$!
	echo "$_rb_bpid" > "$_rb_diag.pid"
	wait "$_rb_bpid"
	_rb_rc=$?
	kill "$_rb_wpid" 2>/dev/null
	wait "$_rb_wpid" 2>/dev/null
	rm -f "$_rb_diag.pid"
	if [ -e "$_rb_diag.deadline" ]; then
		rm -f "$_rb_diag.deadline"
		return 124
	fi
	return $_rb_rc
}

# record NAME STATUS RC SECONDS MESSAGE: one test's verdict, read by the host.
record() {
	_rec_d=$OUT/tests/$1
	[ -d "$_rec_d" ] || mkdir -p "$_rec_d"
	printf '%s\n' "$2" > "$_rec_d/status"
	printf '%s\n' "$3" > "$_rec_d/rc"
	printf '%s\n' "$4" > "$_rec_d/seconds"
	printf '%s\n' "$5" > "$_rec_d/message"
	echo "$2 $1${5:+: $5}"
}

# run_test NAME CMD...: a test that passes when CMD exits 0, under setsid, bounded in time
# ($TEST_TIMEOUT); its verdict and evidence go to $OUT/tests/NAME.
run_test() {
	_rt_name=$1; shift
	_rt_d=$OUT/tests/$_rt_name; [ -d "$_rt_d" ] || mkdir -p "$_rt_d"
	uptime_cs _rt_start
	run_bounded "$TEST_TIMEOUT" "$_rt_d/diag.txt" setsid -w "$@" > "$_rt_d/out.log" 2>&1
	_rt_rc=$?
	seconds_since _rt_secs "$_rt_start"
	verdict "$_rt_name" "$_rt_rc" "$_rt_secs"
	return $_rt_rc
}

# verdict NAME RC SECONDS: the record of a finished test from its out.log: PASS with its last
# line, a timeout, or FAIL with CRIU's first Error line (else its last line).
verdict() {
	_vd_d=$OUT/tests/$1
	if [ "$2" -eq 0 ]; then last_line _vd_msg "$_vd_d/out.log"; record "$1" PASS 0 "$3" "$_vd_msg"
	elif [ "$2" -eq 124 ]; then record "$1" FAIL 124 "$3" "timeout after ${TEST_TIMEOUT}s"
	else
		_vd_msg=$(first_error "$_vd_d/out.log")
		[ -n "$_vd_msg" ] || last_line _vd_msg "$_vd_d/out.log"
		record "$1" FAIL "$2" "$3" "$_vd_msg"
	fi
}

# last_line VAR FILE: the file's last line into VAR, with builtins only.
last_line() {
	_ll_v=
	while IFS= read -r _ll_l || [ -n "$_ll_l" ]; do _ll_v=$_ll_l; done < "$2"
	eval "$1=\$_ll_v"
}

# run_feature_checks FEATURE...: a test feature/F per feature, `$CRIU check --feature F`, as
# many at once as the guest has CPUs (CRIU's check takes one --feature at a time). Each keeps
# its own directory, clock and verdict like run_test, but they share one watchdog: TEST_TIMEOUT
# for them all, as a watchdog per check cost more than the check under TCG. At the deadline
# the check that was running FAILs as a timeout with the diagnostics (its own command line among
# them); those not reached are SKIPped, naming it.
run_feature_checks() {
	[ $# -gt 0 ] || return 0
	_rf_dirs=; for _rf_f in "$@"; do _rf_dirs="$_rf_dirs $OUT/tests/feature/$_rf_f"; done
	# shellcheck disable=SC2086
	mkdir -p $_rf_dirs
	_rf_diag=$OUT/tests/feature-checks.diag
	# shellcheck disable=SC2016
	run_bounded "$TEST_TIMEOUT" "$_rf_diag" setsid -w sh -c '. "$HERE/lib.sh"; feature_pool "$@"' sh "$@"
	_rf_hung=
	for _rf_f in "$@"; do
		_rf_d=$OUT/tests/feature/$_rf_f
		[ -f "$_rf_d/status" ] && continue
		if [ -f "$_rf_d/out.log" ]; then
			cp "$_rf_diag" "$_rf_d/diag.txt" 2>/dev/null
			record "feature/$_rf_f" FAIL 124 "$TEST_TIMEOUT" "timeout: the feature checks did not finish in ${TEST_TIMEOUT}s, this one was running"
			_rf_hung="$_rf_hung feature/$_rf_f"
		else
			record "feature/$_rf_f" SKIP 0 0 "not run: the feature checks' deadline (${TEST_TIMEOUT}s) passed while${_rf_hung:- another check} ran"
		fi
	done
	rm -f "$_rf_diag"
}

# The pool of run_feature_checks: worker K of N takes every Nth feature from the Kth (they
# take about the same time each, so no worker waits long for another). N: CHECK_JOBS, else
# the CPUs.
feature_pool() {
	_fp_n=${CHECK_JOBS:-$(nproc 2>/dev/null || echo 1)}
	_fp_k=0
	while [ $_fp_k -lt "$_fp_n" ]; do feature_worker "$_fp_k" "$_fp_n" "$@" & _fp_k=$((_fp_k + 1)); done
	wait
}

feature_worker() { # k n feature...
	_fw_k=$1; _fw_n=$2; shift 2; _fw_i=0
	for _fw_f; do
		if [ $((_fw_i % _fw_n)) -eq "$_fw_k" ]; then
			uptime_cs _fw_start
			"$CRIU" check --feature "$_fw_f" > "$OUT/tests/feature/$_fw_f/out.log" 2>&1
			_fw_rc=$?
			seconds_since _fw_secs "$_fw_start"
			verdict "feature/$_fw_f" "$_fw_rc" "$_fw_secs"
		fi
		_fw_i=$((_fw_i + 1))
	done
}

# run_scenarios QUEUE: the scenarios listed in QUEUE (name<TAB>timeout<TAB>script<TAB>holds per
# line), SCENARIO_JOBS at a time (default: the CPUs, at least 2), started in the order listed.
# "holds" names (space-separated, "-" for none) what a scenario changes or reads for the whole
# guest, e.g. the root mount table, which a new mount namespace copies: two that hold the same
# name never run at once. Each scenario keeps its own deadline (6 times its step timeout),
# directory and records, and marks the clock at its start (scenario:NAME) and its end
# (scenario-done:NAME).
run_scenarios() {
	_rs_pool=${SCENARIO_POOL_DIR:-/run/cr-guest/pool}
	rm -rf "$_rs_pool"; mkdir -p "$_rs_pool/claimed" "$_rs_pool/held"
	# One per CPU, and two at least: a scenario waiting for a hang leaves its CPU idle.
	_rs_n=${SCENARIO_JOBS:-$(nproc 2>/dev/null || echo 1)}
	[ "$_rs_n" -ge 2 ] || [ -n "$SCENARIO_JOBS" ] || _rs_n=2
	_rs_k=0
	while [ $_rs_k -lt "$_rs_n" ]; do scenario_worker "$1" "$_rs_pool" & _rs_k=$((_rs_k + 1)); done
	wait
	rm -rf "$_rs_pool"
}

# A worker of run_scenarios: takes the first scenario not yet claimed whose holds are all free
# (mkdir is the atomic claim), runs it, frees its holds; waits while only blocked ones are left.
scenario_worker() { # queue pooldir
	_sw_tab=$(printf '\t')
	while :; do
		_sw_left=; _sw_pick=
		while IFS="$_sw_tab" read -r _sw_name _sw_timeout _sw_script _sw_holds; do
			[ -n "$_sw_name" ] && [ ! -d "$2/claimed/$_sw_name" ] || continue
			_sw_left=1
			take_holds "$2/held" "$_sw_holds" || continue
			if mkdir "$2/claimed/$_sw_name" 2>/dev/null; then _sw_pick=1; break; fi
			drop_holds "$2/held" "$_sw_holds"
		done < "$1"
		if [ -z "$_sw_pick" ]; then
			[ -n "$_sw_left" ] || return 0
			sleep 0.05; continue
		fi
		run_scenario "$_sw_name" "$_sw_timeout" "$_sw_script"
		drop_holds "$2/held" "$_sw_holds"
	done
}

take_holds() { # dir holds: every one of them (a directory each) or none
	_th_got=
	for _th_h in $2; do
		[ "$_th_h" = - ] && continue
		if mkdir "$1/$_th_h" 2>/dev/null; then _th_got="$_th_got $_th_h"
		else drop_holds "$1" "$_th_got"; return 1; fi
	done
}

drop_holds() { # dir holds
	for _dh_h in $2; do [ "$_dh_h" = - ] || rmdir "$1/$_dh_h" 2>/dev/null; done
}

# run_scenario NAME TIMEOUT SCRIPT: one scenario script, bounded; it records its own cases.
run_scenario() {
	mkdir -p "$OUT/scenarios/$1"
	echo "scenario $1"
	mark "scenario:$1"
	SCENARIO=$1 SCENARIO_DIR=$OUT/scenarios/$1 STEP_TIMEOUT=$2 \
		run_bounded $(($2 * 6)) "$OUT/scenarios/$1/diag.txt" sh "$HERE/scenarios/$3" < /dev/null
	[ $? -eq 124 ] && record "$1" FAIL 124 "$(($2 * 6))" "scenario script timed out"
	mark "scenario-done:$1"
}

# CRIU's Error lines from a log: always shown for a failure.
criu_errors() { grep -h -E '^\(?[0-9. ]*\)? *Error|Error \(' "$@" 2>/dev/null | head -n 5; }

first_error() { criu_errors "$@" | head -n 1 | sed 's/^ *([0-9. ]*) *//'; }

# ran_out WHAT SECONDS: a wait ran out; says so, naming what it waited for, on stderr and (while
# a scenario's case runs) in the case's out.log, where last_wait (scenario-lib.sh) finds it for
# the case's message. Returns 1, for the wait to return.
ran_out() {
	echo "timed out after ${2}s waiting for $1" >&2
	if [ -n "$CDIR" ] && [ -d "$CDIR" ]; then echo "timed out after ${2}s waiting for $1" >> "$CDIR/out.log"; fi
	return 1
}
