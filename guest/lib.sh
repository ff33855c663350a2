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
		head=$(dd if="$dev" bs=512 count=1 2>/dev/null | head -c ${#1} | tr -d '\000')
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
	size=$(dd if="$1" bs=512 count=1 2>/dev/null | tr -d '\000' | sed -n 's/^in=\([0-9][0-9]*\)$/\1/p')
	[ -n "$size" ] && [ "$size" -gt 0 ] || return 1
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
		_rb_stop=; trap '_rb_stop=1' TERM
		sleep "$limit" & spid=$!
		trap 'kill "$spid" 2>/dev/null; exit 0' TERM
		[ -n "$_rb_stop" ] && { kill "$spid" 2>/dev/null; exit 0; }
		wait "$spid"
		bpid=$(cat "$diagfile.pid" 2>/dev/null)
		: > "$diagfile.deadline"
		{
			echo "TIMEOUT after ${limit}s: $*"
			proc_diag "$bpid" $DIAG_PIDS
			if [ -n "$DIAG_CGROUP" ]; then echo "--- $DIAG_CGROUP/cgroup.events"; cat "$DIAG_CGROUP/cgroup.events" 2>/dev/null; fi
			if [ -n "$DIAG_LOG" ] && [ -f "$DIAG_LOG" ]; then
				echo "--- tail of $DIAG_LOG"; tail -n 30 "$DIAG_LOG"
				echo "--- Error lines"; grep -E 'Error|Warn' "$DIAG_LOG" | tail -n 20
			fi
		} >> "$diagfile" 2>&1
		for p in $(tree_pids "$bpid"); do kill -9 "$p" 2>/dev/null; done
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

# CRIU's Error lines from a log: always shown for a failure.
criu_errors() { grep -h -E '^\(?[0-9. ]*\)? *Error|Error \(' "$@" 2>/dev/null | head -n 5; }

first_error() { criu_errors "$@" | head -n 1 | sed 's/^ *([0-9. ]*) *//'; }
