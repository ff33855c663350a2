# Helpers for scenario scripts (sourced). A scenario runs real dumps and restores and records
# one or more cases as tests named SCENARIO/CASE. Environment from run-tests: OUT, IN, CRIU,
# SCENARIO, SCENARIO_DIR, STEP_TIMEOUT (seconds per CRIU command).
. "$HERE/lib.sh"
[ -f "$IN/run.conf" ] && . "$IN/run.conf"
WORK=/run/cr-guest/work/$SCENARIO
mkdir -p "$WORK"
T0=$(now)

# case_begin CASE: a fresh images dir and test dir; sets CASE, CDIR, IMG.
case_begin() {
	CASE=$SCENARIO/$1
	CDIR=$OUT/tests/$CASE
	IMG=$WORK/$1.img
	rm -rf "$IMG"; mkdir -p "$CDIR" "$IMG"
	CASE_T0=$(now)
	: > "$CDIR/out.log"
}

# criu_run LABEL ARGS...: one CRIU command, bounded, verbose log kept as CDIR/LABEL.log.
# A restore also writes the restored root's host pid (see restored_pid).
# Sets RC (124 on timeout, diagnostics in CDIR/diag.txt).
criu_run() {
	label=$1; shift
	log=$CDIR/$label.log
	if [ "$1" = restore ]; then rm -f "$WORK/restored.pid"; set -- "$@" --pidfile "$WORK/restored.pid"; fi
	echo "+ criu $*" >> "$CDIR/out.log"
	DIAG_LOG=$log run_bounded "$STEP_TIMEOUT" "$CDIR/diag.txt" "$CRIU" "$@" -v4 -o "$log" >> "$CDIR/out.log" 2>&1
	RC=$?
	echo "  rc=$RC" >> "$CDIR/out.log"
	[ $RC -ne 0 ] && criu_errors "$log" >> "$CDIR/out.log"
	return $RC
}

note() { echo "$*" >> "$CDIR/out.log"; }

# case_end STATUS MESSAGE [OUTCOME]: OUTCOME is success, error or hang (for the report).
case_end() {
	secs=$(echo "$(now) $CASE_T0" | awk '{printf "%.2f", $1-$2}')
	printf '%s\n' "${3:-}" > "$CDIR/outcome"
	record "$CASE" "$1" "${RC:-0}" "$secs" "$2"
}

# outcome_of RC: the word for the report.
outcome_of() { case $1 in 0) echo success ;; 124) echo hang ;; *) echo error ;; esac; }

# The first CRIU Error line of a step's log, for messages.
err_of() { first_error "$CDIR/$1.log"; }

# Start a command as its own session, stdio on /dev/null; prints its pid once it really is a
# session leader running the command (freezing or dumping it earlier would catch setsid itself).
start_session() {
	setsid "$@" < /dev/null > /dev/null 2>&1 &
	sp=$!
	i=0
	while [ $i -lt 100 ]; do
		sid=$(sed 's/^.*) //' /proc/"$sp"/stat 2>/dev/null | awk '{print $4}')
		exe=$(readlink /proc/"$sp"/exe 2>/dev/null)
		[ "$sid" = "$sp" ] && [ "${exe##*/}" != setsid ] && break
		sleep 0.05; i=$((i + 1))
	done
	echo "$sp"
}

# The host pid of the tree's root after `criu restore --pidfile` (a pidns init gets a new one).
restored_pid() { cat "$WORK/restored.pid" 2>/dev/null; }

alive() { kill -0 "$1" 2>/dev/null; }

# wait_for FILE SECONDS: until FILE exists and is non-empty.
wait_for() {
	i=0
	while [ ! -s "$1" ] && [ $i -lt $(($2 * 10)) ]; do sleep 0.1; i=$((i + 1)); done
	[ -s "$1" ]
}

# wait_value FILE AWK-CONDITION SECONDS: until the number in FILE satisfies the condition on
# v (e.g. "v > 7"), polled on the wall clock every 0.05 s: an event wait, not a fixed sleep.
wait_value() {
	deadline=$(echo "$(now) $3" | awk '{printf "%.2f", $1 + $2}')
	while :; do
		v=$(cat "$1" 2>/dev/null)
		[ -n "$v" ] && awk -v v="$v" "BEGIN { exit !($2) }" && return 0
		awk -v n="$(now)" -v d="$deadline" 'BEGIN { exit !(n >= d) }' && return 1
		sleep 0.05
	done
}

kill_tree() { for p in $(tree_pids "$1"); do kill -9 "$p" 2>/dev/null; done; }

# ns_init OUTER: the pid (host view) of the namespace init that `unshare --fork` (pid OUTER)
# started, once it runs its own program (not unshare or setsid any more).
ns_init() {
	i=0
	while [ $i -lt 100 ]; do
		init=$(cat /proc/"$1"/task/*/children 2>/dev/null | awk '{print $1}')
		exe=$(readlink /proc/"$init"/exe 2>/dev/null)
		case "${exe##*/}" in "" | setsid | unshare) ;; *) echo "$init"; return 0 ;; esac
		sleep 0.05; i=$((i + 1))
	done
	return 1
}
