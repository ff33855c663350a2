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

now() { cut -d' ' -f1 /proc/uptime; }

# The uptime in centiseconds into the variable named $1, and the seconds since such a reading
# into the variable named $1 ("3.07"): builtins only, as a fork costs tens of milliseconds
# under TCG and every test took a dozen of them for its bookkeeping.
uptime_cs() { read -r _up _rest < /proc/uptime; _i=${_up%.*}; _f=${_up#*.}; eval "$1=\$((_i * 100 + 1$_f - 100))"; }
seconds_since() { # var start_cs
	uptime_cs _now
	_d=$((_now - $2)); _c=$((_d % 100)); [ "$_c" -lt 10 ] && _c=0$_c
	eval "$1=$((_d / 100)).$_c"
}

# A clock mark for the host's per-phase clock (the init prefixes it with "cr-guest: ").
mark() { echo "clock $1 $(now)"; }

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
		trap 'kill "$spid" 2>/dev/null; exit 0' TERM
		sleep "$limit" & spid=$!
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
	d=$OUT/tests/$name; mkdir -p "$d"
	uptime_cs start
	run_bounded "$TEST_TIMEOUT" "$d/diag.txt" setsid -w "$@" > "$d/out.log" 2>&1
	rc=$?
	seconds_since secs "$start"
	if [ $rc -eq 0 ]; then record "$name" PASS 0 "$secs" "$(tail -n 1 "$d/out.log")"
	elif [ $rc -eq 124 ]; then record "$name" FAIL 124 "$secs" "timeout after ${TEST_TIMEOUT}s"
	else
		msg=$(first_error "$d/out.log")
		record "$name" FAIL "$rc" "$secs" "${msg:-$(tail -n 1 "$d/out.log")}"
	fi
	return $rc
}

# CRIU's Error lines from a log: always shown for a failure.
criu_errors() { grep -h -E '^\(?[0-9. ]*\)? *Error|Error \(' "$@" 2>/dev/null | head -n 5; }

first_error() { criu_errors "$@" | head -n 1 | sed 's/^ *([0-9. ]*) *//'; }
