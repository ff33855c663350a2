# Helpers for scenario scripts (sourced). A scenario runs real dumps and restores and records
# one or more cases as tests named SCENARIO/CASE. Environment from run-tests: OUT, IN, CRIU,
# SCENARIO, SCENARIO_DIR, STEP_TIMEOUT (seconds per CRIU command).
. "$HERE/lib.sh"
[ -f "$IN/run.conf" ] && . "$IN/run.conf"
WORK=/run/cr-guest/work/$SCENARIO
mkdir -p "$WORK"

# Migration (scenarios.yaml `migrate:`). PHASE says which halves of a case run in this boot:
#   both     dump and restore here (every ordinary run)
#   dump     boot A: dump, then hand the images and the case's state over to $TRANSFER
#   restore  boot B: take them over from $TRANSFER, then restore and check
# CRIU_DUMP and CRIU_RESTORE are the binaries of each half (an in-place upgrade dumps with
# one CRIU and restores with another); MIGRATE lists the cases (scenario/case) that migrate.
: "${PHASE:=both}"
: "${CRIU_DUMP:=$CRIU}"
: "${CRIU_RESTORE:=$CRIU}"
TRANSFER=${TRANSFER:-/run/cr-guest/transfer}

# case_begin CASE: a fresh images dir and test dir; sets CASE, CDIR, IMG.
case_begin() {
	CASE=$SCENARIO/$1
	CDIR=$OUT/tests/$CASE
	IMG=$WORK/$1.img
	rm -rf "$IMG"; mkdir -p "$CDIR" "$IMG"
	uptime_cs CASE_T0
	: > "$CDIR/out.log"
}

# criu_run LABEL ARGS...: one CRIU command, bounded, verbose log kept as CDIR/LABEL.log.
# A restore also writes the restored root's host pid (see restored_pid).
# Sets RC (124 on timeout, diagnostics in CDIR/diag.txt).
criu_run() {
	label=$1; shift
	log=$CDIR/$label.log
	bin=$CRIU
	case $1 in dump) bin=$CRIU_DUMP ;; restore) bin=$CRIU_RESTORE ;; esac
	if [ "$1" = restore ]; then rm -f "$WORK/restored.pid"; set -- "$@" --pidfile "$WORK/restored.pid"; fi
	criu_once "$bin" "$@"
	# A restore that finds a dumped pid taken (by a process of this guest, not of the dump):
	# say who holds it, wait for it to go (5 s at most) and restore once more. The first
	# attempt's log stays as LABEL.pid-taken.log; out.log says what happened.
	if [ $RC -ne 0 ] && [ "$1" = restore ]; then
		taken=$(sed -n "s/.*Can't fork for \([0-9]*\): File exists.*/\1/p" "$log" | sort -u)
		[ -n "$taken" ] || return $RC
		for p in $taken; do
			echo "  pid $p is taken by: $(tr '\0' ' ' 2>/dev/null < /proc/"$p"/cmdline)($(grep -E '^(State|PPid):' /proc/"$p"/status 2>/dev/null | tr '\n\t' '  '))" >> "$CDIR/out.log"
		done
		uptime_cs waited
		# shellcheck disable=SC2086
		wait_gone 5 $taken || return $RC
		seconds_since waited "$waited"
		mv "$log" "$CDIR/$label.pid-taken.log"
		echo "  pid $taken free again after ${waited}s: restoring once more" >> "$CDIR/out.log"
		criu_once "$bin" "$@"
	fi
	return $RC
}

criu_once() { # bin args...: one bounded run into $log, RC and the Error lines in out.log
	echo "+ $*" >> "$CDIR/out.log"
	DIAG_LOG=$log run_bounded "$STEP_TIMEOUT" "$CDIR/diag.txt" "$@" -v4 -o "$log" >> "$CDIR/out.log" 2>&1
	RC=$?
	echo "  rc=$RC" >> "$CDIR/out.log"
	[ $RC -ne 0 ] && criu_errors "$log" >> "$CDIR/out.log"
	return 0
}

note() { echo "$*" >> "$CDIR/out.log"; }

# case_end STATUS MESSAGE [OUTCOME]: OUTCOME is success, error or hang (for the report).
case_end() {
	seconds_since secs "$CASE_T0"
	printf '%s\n' "${3:-}" > "$CDIR/outcome"
	record "$CASE" "$1" "${RC:-0}" "$secs" "$2"
}

# outcome_of RC: the word for the report.
outcome_of() { case $1 in 0) echo success ;; 124) echo hang ;; *) echo error ;; esac; }

# The first CRIU Error line of a step's log, for messages.
err_of() { first_error "$CDIR/$1.log"; }

# Start a command as its own session, stdio on /dev/null; prints its pid once it really is a
# session leader running the command (freezing or dumping it earlier would catch setsid itself).
# The waits below poll with builtins and one `sleep` per round: a fork costs under TCG.
start_session() {
	setsid "$@" < /dev/null > /dev/null 2>&1 &
	sp=$!
	i=0
	while [ $i -lt 200 ]; do
		# /proc/PID/stat: "pid (comm) state ppid pgrp session ..."; comm may hold spaces.
		st=; { read -r st < /proc/"$sp"/stat; } 2>/dev/null
		st=${st##*) }
		# shellcheck disable=SC2086
		[ -n "$st" ] && set -- $st && [ "$4" = "$sp" ] && exe=$(readlink /proc/"$sp"/exe 2>/dev/null) && [ "${exe##*/}" != setsid ] && break
		sleep 0.025; i=$((i + 1))
	done
	echo "$sp"
}

# The host pid of the tree's root after `criu restore --pidfile` (a pidns init gets a new one).
restored_pid() { cat "$WORK/restored.pid" 2>/dev/null; }

alive() { kill -0 "$1" 2>/dev/null; }

# deadline_cs VAR SECONDS: the uptime (centiseconds) SECONDS from now; past VAR: true once it is.
deadline_cs() { uptime_cs _dl_now; eval "$1=$((_dl_now + $2 * 100))"; }
past() { uptime_cs _pa_now; [ "$_pa_now" -ge "$1" ]; }

# Counter files (the targets of simple-process, tcp-established, kata-container; the format and
# why it is written in place: guest/helpers/crg-counter.h).
# read_counter VAR FILE: the number in FILE into VAR, with builtins only (the waits poll it).
read_counter() { eval "$1="; { read -r "$1" < "$2"; } 2>/dev/null; }
# counter FILE: the number in it (empty before the first write).
counter() { read_counter _cv "$1"; printf '%s' "$_cv"; }

# wait_for FILE SECONDS: until FILE exists and is non-empty.
wait_for() {
	deadline_cs _wf_end "$2"
	while [ ! -s "$1" ]; do past "$_wf_end" && return 1; sleep 0.025; done
}

# wait_value FILE CONDITION SECONDS: until the number in FILE satisfies the shell arithmetic
# CONDITION on v (e.g. "v > 7"), polled every 0.025 s: an event wait, not a fixed sleep.
# SEEN is the value that satisfied it (a fast counter moves on before a second read).
wait_value() {
	deadline_cs _wv_end "$3"
	while :; do
		read_counter v "$1"
		case $v in '' | *[!0-9]*) ;; *) eval "_wv_ok=\$(( $2 ))"; [ "$_wv_ok" = 1 ] && { SEEN=$v; return 0; } ;; esac
		past "$_wv_end" && return 1
		sleep 0.025
	done
}

# wait_changed FILE OLD SECONDS: until FILE holds something other than OLD.
wait_changed() {
	deadline_cs _wc_end "$3"
	while :; do
		read_counter _wc_v "$1"
		[ "$_wc_v" != "$2" ] && return 0
		past "$_wc_end" && return 1
		sleep 0.025
	done
}

# wait_gone SECONDS PID...: until none of them exists any more (a killed process whose pid a
# restore needs, or whose mounts the next case reuses).
wait_gone() {
	deadline_cs _wg_end "$1"; shift
	for _wg_p; do
		while [ -e /proc/"$_wg_p" ]; do past "$_wg_end" && return 1; sleep 0.025; done
	done
}

# kill_tree_wait PID: kill_tree (lib.sh), then wait until the whole tree is gone.
kill_tree_wait() {
	kill_tree "$1"
	# shellcheck disable=SC2086
	wait_gone 2 $KILLED_PIDS
}

# ns_init OUTER: the pid (host view) of the namespace init that `unshare --fork` (pid OUTER)
# started, once it runs its own program (not unshare or setsid any more).
ns_init() {
	i=0
	while [ $i -lt 200 ]; do
		init=
		for c in /proc/"$1"/task/*/children; do { read -r init _ < "$c"; } 2>/dev/null; [ -n "$init" ] && break; done
		if [ -n "$init" ]; then
			exe=$(readlink /proc/"$init"/exe 2>/dev/null)
			case "${exe##*/}" in "" | setsid | unshare) ;; *) echo "$init"; return 0 ;; esac
		fi
		sleep 0.025; i=$((i + 1))
	done
	return 1
}

# --- Cases in halves (migration) ------------------------------------------------------------
# run_case NAME DUMP_HALF RESTORE_HALF: DUMP_HALF sets the case up and dumps it (returning
# non-zero after case_end when it failed); RESTORE_HALF restores and checks. What the restore
# half needs from the dump half travels with `carry VAR...` (values) and `carry_dir DIR...`
# (files the restored process needs, e.g. its state directory). A case that does not migrate
# runs only when MIGRATE is empty (an ordinary run).
run_case() {
	name=$1; dump_half=$2; restore_half=$3
	if [ -n "$MIGRATE" ]; then
		case " $MIGRATE " in *" $SCENARIO/$name "*) ;; *) return 0 ;; esac
	fi
	case_begin "$name"
	: > "$CDIR/carried.env"; : > "$CDIR/carried.dirs"
	case $PHASE in
	both) "$dump_half" && "$restore_half" ;;
	dump)
		"$dump_half" || return 0
		if hand_over; then case_end PASS "dumped with $($CRIU_DUMP --version | sed -n 's/^Version: //p'); handed over ($(du -sk "$TRANSFER/$CASE" | cut -f1) KiB)" success
		else case_end FAIL "dumped, but the hand-over to $TRANSFER failed" error; fi
		;;
	restore)
		if take_over; then "$restore_half"
		else RC=0; case_end FAIL "nothing to restore: $TRANSFER/$CASE is missing or incomplete (the dump half did not hand it over)" error; fi
		;;
	esac
}

carry() { for v in "$@"; do eval "val=\$$v"; printf "%s='%s'\n" "$v" "$val" >> "$CDIR/carried.env"; done; }
carry_dir() { for d in "$@"; do echo "$d" >> "$CDIR/carried.dirs"; done; }

# The images, the carried values and directories of CASE into $TRANSFER/$CASE.
hand_over() {
	t=$TRANSFER/$CASE
	rm -rf "$t"; mkdir -p "$t"
	cp -a "$IMG" "$t/img" && cp "$CDIR/carried.env" "$CDIR/carried.dirs" "$t/" || return 1
	if [ -s "$CDIR/carried.dirs" ]; then
		# shellcheck disable=SC2046
		tar -cf "$t/files.tar" -C / $(sed 's|^/||' "$CDIR/carried.dirs") || return 1
	fi
	echo ok > "$t/complete"
}

# The reverse, in boot B: the images into IMG, the files back where they were, the values set.
take_over() {
	t=$TRANSFER/$CASE
	[ -f "$t/complete" ] || return 1
	rm -rf "$IMG"; cp -a "$t/img" "$IMG" || return 1
	if [ -f "$t/files.tar" ]; then tar -xf "$t/files.tar" -C / || return 1; fi
	. "$t/carried.env"
	note "taken over from $t: $(ls "$IMG" | wc -l) image files; carried: $(cut -d= -f1 "$t/carried.env" | tr '\n' ' ')"
}
