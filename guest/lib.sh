# cr-guest guest library (POSIX sh): the results disk protocol, bounded commands with hang
# diagnostics, and per-test records. Sourced by init, run-tests and the scenarios.

# The contract shared with the host (markers, results disk layout), generated into the image
# from scripts/lib/guest-contract.ts: RESULTS_MARKER, RESULTS_DONE_MARKER, END_MARKER,
# STARTED_MARKER, INPUT_OFFSET_MIB, OUTPUT_OFFSET_MIB.
. "${CRG_CONTRACT_ENV:-/usr/libexec/cr-guest/contract.env}"

find_disk() { # marker: the block device whose first sector starts with it
	for sys in /sys/block/*; do
		dev=/dev/${sys##*/}
		[ -b "$dev" ] || continue
		# One program per disk: the shell drops the NUL bytes of a disk that is not ours.
		head=$(head -c ${#1} "$dev" 2>/dev/null)
		if [ "$head" = "$1" ]; then echo "$dev"; return 0; fi
	done
	return 1
}

find_results_disk() { find_disk "$RESULTS_MARKER"; }

# The transfer disk of a migration (see scripts/lib/guest-contract.ts).
write_transfer() { # dev dir
	tar -czf /run/cr-guest/transfer.tgz -C "$2" . || return 1
	size=$(stat -c %s /run/cr-guest/transfer.tgz)
	sum=$(sha256sum /run/cr-guest/transfer.tgz | cut -d' ' -f1)
	dd if=/run/cr-guest/transfer.tgz of="$1" bs=1M seek=$TRANSFER_OFFSET_MIB conv=notrunc,fsync 2>/dev/null || return 1
	rm -f /run/cr-guest/transfer.tgz
	printf '%s size=%s sha256=%s\n' "$TRANSFER_DONE_MARKER" "$size" "$sum" | dd of="$1" bs=512 seek=1 conv=notrunc,fsync 2>/dev/null
}

read_transfer() { # dev dir: fails with the reason on stdout
	rec=$(dd if="$1" bs=512 skip=1 count=1 2>/dev/null | tr -d '\000' | head -n 1)
	size=$(echo "$rec" | sed -n "s/^$TRANSFER_DONE_MARKER size=\([0-9]*\) sha256=.*/\1/p")
	sum=$(echo "$rec" | sed -n "s/^$TRANSFER_DONE_MARKER size=[0-9]* sha256=\([0-9a-f]*\)$/\1/p")
	[ -n "$size" ] && [ -n "$sum" ] || { echo "no transfer record on $1"; return 1; }
	dd if="$1" bs=1M skip=$TRANSFER_OFFSET_MIB count="$size" iflag=count_bytes 2>/dev/null > /run/cr-guest/transfer.tgz
	got=$(sha256sum /run/cr-guest/transfer.tgz | cut -d' ' -f1)
	[ "$got" = "$sum" ] || { echo "transfer on $1 is corrupt: sha256 $got, record says $sum"; return 1; }
	mkdir -p "$2" && tar -xzf /run/cr-guest/transfer.tgz -C "$2" || { echo "transfer on $1 does not unpack"; return 1; }
	rm -f /run/cr-guest/transfer.tgz
}

read_input() { # dev dir
	# The header is two text lines (the marker, in=SIZE): read with builtins.
	{ read -r _ri_marker; read -r _ri_in; } < "$1" 2>/dev/null
	[ "$_ri_marker" = "$RESULTS_MARKER" ] || return 1
	size=${_ri_in#in=}
	case $size in '' | *[!0-9]*) return 1 ;; esac
	[ "$size" -gt 0 ] || return 1
	dd if="$1" bs=1M skip=$INPUT_OFFSET_MIB count="$size" iflag=count_bytes 2>/dev/null | tar -xzf - -C "$2"
}

write_output() { # dev dir
	tar -czf /run/cr-guest/out.tgz -C "$2" . || return 1
	size=$(stat -c %s /run/cr-guest/out.tgz)
	dd if=/run/cr-guest/out.tgz of="$1" bs=1M seek=$OUTPUT_OFFSET_MIB conv=notrunc,fsync 2>/dev/null || return 1
	printf '%s out=%s\n' "$RESULTS_DONE_MARKER" "$size" | dd of="$1" bs=512 seek=1 conv=notrunc,fsync 2>/dev/null
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
	for child in $(cat /proc/"$1"/task/*/children 2>/dev/null); do tree_pids "$child"; done
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
	for root in "$@"; do
		for p in $(tree_pids "$root"); do
			[ -d /proc/"$p" ] || continue
			echo "--- pid $p: $(tr '\000' ' ' < /proc/"$p"/cmdline 2>/dev/null)"
			echo "wchan: $(cat /proc/"$p"/wchan 2>/dev/null)"
			grep -E '^(State|PPid|NSpid|NSsid|TracerPid|SigBlk|SigPnd)' /proc/"$p"/status 2>/dev/null
			echo "stack:"; cat /proc/"$p"/stack 2>/dev/null | sed 's/^/  /'
		done
	done
}

# Every process of the guest but kernel threads, one line each (pid ppid state wchan comm),
# read with builtins only (a fork per process would cost seconds under TCG), and the kernel
# stack of a CRIU outside the trees shown: a process that left the tree (reparented when its
# parent died) is often where a hang is.
proc_table() { # pid... (the trees already shown)
	_pt_shown=" $(for r in "$@"; do tree_pids "$r"; done | tr '\n' ' ') "
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
	limit=$1; diagfile=$2; shift 2
	rm -f "$diagfile.deadline" "$diagfile.pid"
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
		sleep "$limit" & spid=$!
		trap 'kill -KILL "$spid" 2>/dev/null; exit 0' TERM
		[ -n "$_rb_stop" ] && { kill -KILL "$spid" 2>/dev/null; exit 0; }
		wait "$spid"
		# From here on the watchdog finishes its work: the command ends as it is killed, and
		# the TERM that follows must not cut the kill short.
		trap '' TERM
		# The command's pid, written right after its fork: on a loaded machine the deadline can
		# come first, and an empty pid would leave the command running past it.
		bpid=; _rb_n=0
		while { read -r bpid < "$diagfile.pid"; } 2>/dev/null; [ -z "$bpid" ] && [ "$_rb_n" -lt 1000 ]; do sleep 0.01; _rb_n=$((_rb_n + 1)); done
		: > "$diagfile.deadline"
		{
			echo "TIMEOUT after ${limit}s: $*"
			proc_diag "$bpid" $DIAG_PIDS
			echo "--- every process (pid ppid state wchan command)"
			proc_table "$bpid" $DIAG_PIDS
			if [ -n "$DIAG_CGROUP" ]; then echo "--- $DIAG_CGROUP/cgroup.events"; cat "$DIAG_CGROUP/cgroup.events" 2>/dev/null; fi
			if [ -n "$DIAG_LOG" ] && [ -f "$DIAG_LOG" ]; then
				echo "--- tail of $DIAG_LOG"; tail -n 30 "$DIAG_LOG"
				echo "--- Error lines"; grep -E 'Error|Warn' "$DIAG_LOG" | tail -n 20
			fi
		} >> "$diagfile" 2>&1
		kill_tree "$bpid"
	) &
	wpid=$!
	"$@" &
	bpid=$!
	echo "$bpid" > "$diagfile.pid"
	wait "$bpid"
	brc=$?
	kill "$wpid" 2>/dev/null
	wait "$wpid" 2>/dev/null
	rm -f "$diagfile.pid"
	if [ -e "$diagfile.deadline" ]; then
		rm -f "$diagfile.deadline"
		return 124
	fi
	return $brc
}

# record NAME STATUS RC SECONDS MESSAGE: one test's verdict, read by the host.
record() {
	d=$OUT/tests/$1
	[ -d "$d" ] || mkdir -p "$d"
	printf '%s\n' "$2" > "$d/status"
	printf '%s\n' "$3" > "$d/rc"
	printf '%s\n' "$4" > "$d/seconds"
	printf '%s\n' "$5" > "$d/message"
	echo "$2 $1${5:+: $5}"
}

# run_test NAME CMD...: a test that passes when CMD exits 0, under setsid, bounded in time
# ($TEST_TIMEOUT); its verdict and evidence go to $OUT/tests/NAME.
run_test() {
	name=$1; shift
	d=$OUT/tests/$name; [ -d "$d" ] || mkdir -p "$d"
	uptime_cs start
	run_bounded "$TEST_TIMEOUT" "$d/diag.txt" setsid -w "$@" > "$d/out.log" 2>&1
	rc=$?
	seconds_since secs "$start"
	verdict "$name" "$rc" "$secs"
	return $rc
}

# verdict NAME RC SECONDS: the record of a finished test from its out.log: PASS with its last
# line, a timeout, or FAIL with CRIU's first Error line (else its last line).
verdict() {
	_vd=$OUT/tests/$1
	if [ "$2" -eq 0 ]; then last_line _msg "$_vd/out.log"; record "$1" PASS 0 "$3" "$_msg"
	elif [ "$2" -eq 124 ]; then record "$1" FAIL 124 "$3" "timeout after ${TEST_TIMEOUT}s"
	else
		_msg=$(first_error "$_vd/out.log")
		[ -n "$_msg" ] || last_line _msg "$_vd/out.log"
		record "$1" FAIL "$2" "$3" "$_msg"
	fi
}

# last_line VAR FILE: the file's last line into VAR, with builtins only.
last_line() {
	_ll=
	while IFS= read -r _l || [ -n "$_l" ]; do _ll=$_l; done < "$2"
	eval "$1=\$_ll"
}

# run_feature_checks FEATURE...: a test feature/F per feature, `$CRIU check --feature F`, as
# many at once as the guest has CPUs (CRIU's check takes one --feature at a time). Each keeps
# its own directory, clock and verdict like run_test, but they share one watchdog: TEST_TIMEOUT
# for them all, as a watchdog per check cost more than the check under TCG. At the deadline
# the check that was running FAILs as a timeout with the diagnostics (its own command line among
# them); those not reached are SKIPped, naming it.
run_feature_checks() {
	[ $# -gt 0 ] || return 0
	_dirs=; for _rf in "$@"; do _dirs="$_dirs $OUT/tests/feature/$_rf"; done
	# shellcheck disable=SC2086
	mkdir -p $_dirs
	_diag=$OUT/tests/feature-checks.diag
	# shellcheck disable=SC2016
	run_bounded "$TEST_TIMEOUT" "$_diag" setsid -w sh -c '. "$HERE/lib.sh"; feature_pool "$@"' sh "$@"
	_hung=
	for _rf in "$@"; do
		_d=$OUT/tests/feature/$_rf
		[ -f "$_d/status" ] && continue
		if [ -f "$_d/out.log" ]; then
			cp "$_diag" "$_d/diag.txt" 2>/dev/null
			record "feature/$_rf" FAIL 124 "$TEST_TIMEOUT" "timeout: the feature checks did not finish in ${TEST_TIMEOUT}s, this one was running"
			_hung="$_hung feature/$_rf"
		else
			record "feature/$_rf" SKIP 0 0 "not run: the feature checks' deadline (${TEST_TIMEOUT}s) passed while${_hung:- another check} ran"
		fi
	done
	rm -f "$_diag"
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
	for _th in $2; do
		[ "$_th" = - ] && continue
		if mkdir "$1/$_th" 2>/dev/null; then _th_got="$_th_got $_th"
		else drop_holds "$1" "$_th_got"; return 1; fi
	done
}

drop_holds() { # dir holds
	for _dh in $2; do [ "$_dh" = - ] || rmdir "$1/$_dh" 2>/dev/null; done
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
