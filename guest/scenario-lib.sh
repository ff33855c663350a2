# Helpers for scenario scripts (sourced). A scenario runs real dumps and restores and records
# one or more cases as tests named SCENARIO/CASE. Environment from run-tests: OUT, IN, CRIU,
# SCENARIO, SCENARIO_DIR, STEP_TIMEOUT (seconds per CRIU command).
# Variable names and waits follow the rules at the top of lib.sh.
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

# case_begin CASE: a fresh images dir and test dir; sets CASE, CDIR, IMG, and RC to 0 (a case
# that fails before its first CRIU command records rc 0, not the previous case's RC).
case_begin() {
	RC=0
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
	_cr_label=$1; shift
	_cr_log=$CDIR/$_cr_label.log
	_cr_bin=$CRIU
	case $1 in dump) _cr_bin=$CRIU_DUMP ;; restore) _cr_bin=$CRIU_RESTORE ;; esac
	if [ "$1" = restore ]; then rm -f "$WORK/restored.pid"; set -- "$@" --pidfile "$WORK/restored.pid"; fi
	criu_once "$_cr_log" "$_cr_bin" "$@"
	# A restore that finds a dumped pid taken (by a process of this guest, not of the dump):
	# say who holds it, wait for it to go (5 s at most) and restore once more. The first
	# attempt's log stays as LABEL.pid-taken.log; out.log says what happened.
	if [ $RC -ne 0 ] && [ "$1" = restore ]; then
		_cr_taken=$(sed -n "s/.*Can't fork for \([0-9]*\): File exists.*/\1/p" "$_cr_log" | sort -u)
		[ -n "$_cr_taken" ] || return $RC
		for _cr_p in $_cr_taken; do
			echo "  pid $_cr_p is taken by: $(tr '\0' ' ' 2>/dev/null < /proc/"$_cr_p"/cmdline)($(grep -E '^(State|PPid):' /proc/"$_cr_p"/status 2>/dev/null | tr '\n\t' '  '))" >> "$CDIR/out.log"
		done
		uptime_cs _cr_waited
		# The failed restore stands (its RC), and out.log says which pid stayed taken.
		# shellcheck disable=SC2086
		wait_gone 5 $_cr_taken || return $RC
		seconds_since _cr_waited "$_cr_waited"
		mv "$_cr_log" "$CDIR/$_cr_label.pid-taken.log"
		echo "  pid $_cr_taken free again after ${_cr_waited}s: restoring once more" >> "$CDIR/out.log"
		criu_once "$_cr_log" "$_cr_bin" "$@"
	fi
	return $RC
}

criu_once() { # log bin args...: one bounded run into log, RC and the Error lines in out.log
	_co_log=$1; shift
	echo "+ $*" >> "$CDIR/out.log"
	DIAG_LOG=$_co_log run_bounded "$STEP_TIMEOUT" "$CDIR/diag.txt" "$@" -v4 -o "$_co_log" >> "$CDIR/out.log" 2>&1
	RC=$?
	echo "  rc=$RC" >> "$CDIR/out.log"
	[ $RC -ne 0 ] && criu_errors "$_co_log" >> "$CDIR/out.log"
	return 0
}

note() { echo "$*" >> "$CDIR/out.log"; }

# case_end STATUS MESSAGE [OUTCOME]: OUTCOME is success, error or hang (for the report).
case_end() {
	seconds_since _ce_secs "$CASE_T0"
	printf '%s\n' "${3:-}" > "$CDIR/outcome"
	record "$CASE" "$1" "${RC:-0}" "$_ce_secs" "$2"
}

# outcome_of RC: the word for the report.
outcome_of() { case $1 in 0) echo success ;; 124) echo hang ;; *) echo error ;; esac; }

# The first CRIU Error line of a step's log, for messages.
err_of() { first_error "$CDIR/$1.log"; }

# The last wait that ran out in this case (ran_out in lib.sh), for the case's message.
last_wait() {
	_lw_w="no wait ran out"
	while IFS= read -r _lw_l; do case $_lw_l in "timed out after "*) _lw_w=$_lw_l ;; esac; done < "$CDIR/out.log"
	printf '%s' "$_lw_w"
}

# Start a command as its own session, stdio on /dev/null; prints its pid once it really is a
# session leader running the command (freezing or dumping it earlier would catch setsid itself).
# When it is not after 200 polls (5 s and the polls' forks), it is killed and start_session
# fails (ran_out): callers fail the case, not go on with the pid of a half-started command.
# The waits below poll with builtins and one `sleep` per round: a fork costs under TCG.
start_session() {
	setsid "$@" < /dev/null > /dev/null 2>&1 &
	_ses_pid=$!
	_ses_cmd=$1
	uptime_cs _ses_t0
	_ses_i=0
	while :; do
		# /proc/PID/stat: "pid (comm) state ppid pgrp session ..."; comm may hold spaces.
		_ses_st=; { read -r _ses_st < /proc/"$_ses_pid"/stat; } 2>/dev/null
		_ses_st=${_ses_st##*) }
		# shellcheck disable=SC2086
		[ -n "$_ses_st" ] && set -- $_ses_st && [ "$4" = "$_ses_pid" ] && _ses_exe=$(readlink /proc/"$_ses_pid"/exe 2>/dev/null) && [ "${_ses_exe##*/}" != setsid ] && break
		_ses_i=$((_ses_i + 1))
		if [ $_ses_i -ge 200 ]; then
			kill_tree "$_ses_pid"
			seconds_since _ses_t0 "$_ses_t0"
			ran_out "pid $_ses_pid ($_ses_cmd) to lead its own session running its command (killed)" "$_ses_t0"
			return 1
		fi
		sleep 0.025
	done
	echo "$_ses_pid"
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
counter() { read_counter _cn_v "$1"; printf '%s' "$_cn_v"; }

# The waits: each fails with ran_out (lib.sh) at its deadline.
# wait_for FILE SECONDS: until FILE exists and is non-empty.
wait_for() {
	deadline_cs _wf_end "$2"
	while [ ! -s "$1" ]; do past "$_wf_end" && { ran_out "$1 to be written" "$2"; return 1; }; sleep 0.025; done
}

# wait_value FILE CONDITION SECONDS: until the number in FILE satisfies the shell arithmetic
# CONDITION, which starts with v, the number (e.g. "v > 7"), polled every 0.025 s: an event
# wait, not a fixed sleep. SEEN is the value that satisfied it (a fast counter moves on before
# a second read).
wait_value() {
	case $2 in "v "*) ;; *) echo "wait_value: the condition must start with 'v ' (the number): $2" >&2; return 2 ;; esac
	_wv_cond="_wv_v ${2#v }"
	deadline_cs _wv_end "$3"
	while :; do
		read_counter _wv_v "$1"
		case $_wv_v in '' | *[!0-9]*) ;; *) eval "_wv_ok=\$(( $_wv_cond ))"; [ "$_wv_ok" = 1 ] && { SEEN=$_wv_v; return 0; } ;; esac
		past "$_wv_end" && { ran_out "the number in $1 to satisfy $2 (it reads '$_wv_v')" "$3"; return 1; }
		sleep 0.025
	done
}

# wait_changed FILE OLD SECONDS: until FILE holds something other than OLD.
wait_changed() {
	deadline_cs _wc_end "$3"
	while :; do
		read_counter _wc_v "$1"
		[ "$_wc_v" != "$2" ] && return 0
		past "$_wc_end" && { ran_out "$1 to change from '$2'" "$3"; return 1; }
		sleep 0.025
	done
}

# wait_gone SECONDS PID...: until none of them exists any more (a killed process whose pid a
# restore needs, or whose mounts the next case reuses).
wait_gone() {
	deadline_cs _wg_end "$1"; _wg_secs=$1; shift
	for _wg_p; do
		while [ -e /proc/"$_wg_p" ]; do
			if past "$_wg_end"; then
				_wg_left=; for _wg_q; do [ -e /proc/"$_wg_q" ] && _wg_left="$_wg_left $_wg_q"; done
				ran_out "pid(s)$_wg_left to be gone" "$_wg_secs"; return 1
			fi
			sleep 0.025
		done
	done
}

# kill_tree_wait PID: kill_tree (lib.sh), then wait until the whole tree is gone (2 s).
kill_tree_wait() {
	kill_tree "$1"
	# shellcheck disable=SC2086
	wait_gone 2 $KILLED_PIDS
}

# ns_init OUTER: the pid (host view) of the namespace init that `unshare --fork` (pid OUTER)
# started, once it runs its own program (not unshare or setsid any more); fails (ran_out)
# after 200 polls.
ns_init() {
	uptime_cs _ni_t0; _ni_exe=
	_ni_i=0
	while [ $_ni_i -lt 200 ]; do
		_ni_init=
		for _ni_c in /proc/"$1"/task/*/children; do { read -r _ni_init _ni_rest < "$_ni_c"; } 2>/dev/null; [ -n "$_ni_init" ] && break; done
		if [ -n "$_ni_init" ]; then
			_ni_exe=$(readlink /proc/"$_ni_init"/exe 2>/dev/null)
			case "${_ni_exe##*/}" in "" | setsid | unshare) ;; *) echo "$_ni_init"; return 0 ;; esac
		fi
		sleep 0.025; _ni_i=$((_ni_i + 1))
	done
	seconds_since _ni_t0 "$_ni_t0"
	ran_out "a namespace init under pid $1 running its own program (last seen: ${_ni_init:-none}${_ni_exe:+, ${_ni_exe##*/}})" "$_ni_t0"
}

# --- Cases in halves (migration) ------------------------------------------------------------
# run_case NAME DUMP_HALF RESTORE_HALF: DUMP_HALF sets the case up and dumps it (returning
# non-zero after case_end when it failed); RESTORE_HALF restores and checks. What the restore
# half needs from the dump half travels with `carry VAR...` (values) and `carry_dir DIR...`
# (files the restored process needs, e.g. its state directory). A case that does not migrate
# runs only when MIGRATE is empty (an ordinary run).
run_case() {
	_rca_name=$1; _rca_dump=$2; _rca_restore=$3
	# A migration's cases, or the one case smoke --test names (ONLY=scenario/case).
	_rca_only=$MIGRATE
	case $ONLY in "$SCENARIO"/*) _rca_only=$ONLY ;; esac
	if [ -n "$_rca_only" ]; then
		case " $_rca_only " in *" $SCENARIO/$_rca_name "*) ;; *) return 0 ;; esac
	fi
	case_begin "$_rca_name"
	: > "$CDIR/carried.tsv"; : > "$CDIR/carried.dirs"
	CARRY_REFUSED=
	case $PHASE in
	both) "$_rca_dump" && "$_rca_restore" ;;
	dump)
		"$_rca_dump" || return 0
		if [ -n "$CARRY_REFUSED" ]; then case_end FAIL "dumped, but a value cannot be handed over: $CARRY_REFUSED" error
		elif hand_over; then case_end PASS "dumped with $($CRIU_DUMP --version | sed -n 's/^Version: //p'); handed over ($(du -sk "$TRANSFER/$CASE" | cut -f1) KiB)" success
		else case_end FAIL "dumped, but the hand-over to $TRANSFER failed" error; fi
		;;
	restore) if take_over; then "$_rca_restore"; fi ;;
	esac
}

# carry VAR...: the values the restore half needs, one line each in CDIR/carried.tsv:
# NAME<TAB>VALUE, read back by take_over without the shell ever parsing the value (a value is
# data, whatever quotes, $ or backticks it holds). A name is a scenario's own variable
# ([a-z][a-z0-9_]*, see lib.sh: never a library's or an UPPERCASE one); a value is one line.
# What cannot be carried is refused, loudly, and named in CARRY_REFUSED for run_case.
carry() {
	_ca_nl='
'
	for _ca_name; do
		is_case_var "$_ca_name" || { carry_refused "'$_ca_name' is not a scenario variable's name ([a-z][a-z0-9_]*)"; continue; }
		eval "_ca_value=\$$_ca_name"
		case $_ca_value in *"$_ca_nl"*) carry_refused "$_ca_name holds a newline (a carried value is one line)"; continue ;; esac
		printf '%s\t%s\n' "$_ca_name" "$_ca_value" >> "$CDIR/carried.tsv"
	done
}
carry_refused() { echo "carry: $1" >&2; note "carry: $1"; CARRY_REFUSED="${CARRY_REFUSED:+$CARRY_REFUSED; }$1"; }
# is_case_var NAME: NAME is a scenario variable's name, [a-z][a-z0-9_]* (nothing eval could run).
is_case_var() { case $1 in [a-z]*) case $1 in *[!a-z0-9_]*) return 1 ;; esac ;; *) return 1 ;; esac; }
carry_dir() { for _cd_d in "$@"; do echo "$_cd_d" >> "$CDIR/carried.dirs"; done; }

# The images, the carried values and directories of CASE into $TRANSFER/$CASE.
hand_over() {
	_ho_t=$TRANSFER/$CASE
	rm -rf "$_ho_t"; mkdir -p "$_ho_t"
	cp -a "$IMG" "$_ho_t/img" && cp "$CDIR/carried.tsv" "$CDIR/carried.dirs" "$_ho_t/" || return 1
	if [ -s "$CDIR/carried.dirs" ]; then
		# shellcheck disable=SC2046
		tar -cf "$_ho_t/files.tar" -C / $(sed 's|^/||' "$CDIR/carried.dirs") || return 1
	fi
	echo ok > "$_ho_t/complete"
}

# The reverse, in boot B: the images into IMG, the files back where they were, the values set
# (parsed, never sourced). What is missing or malformed fails the case, naming it.
take_over() {
	_to_t=$TRANSFER/$CASE
	[ -f "$_to_t/complete" ] && [ -f "$_to_t/carried.tsv" ] || { take_over_failed "$_to_t is missing or incomplete (the dump half did not hand it over)"; return 1; }
	rm -rf "$IMG"; cp -a "$_to_t/img" "$IMG" || { take_over_failed "the images in $_to_t/img do not copy"; return 1; }
	if [ -f "$_to_t/files.tar" ]; then
		tar -xf "$_to_t/files.tar" -C / || { take_over_failed "$_to_t/files.tar does not unpack"; return 1; }
	fi
	_to_tab=$(printf '\t')
	_to_names=; _to_n=0
	while IFS= read -r _to_line || [ -n "$_to_line" ]; do
		_to_n=$((_to_n + 1))
		_to_name=${_to_line%%"$_to_tab"*}
		case $_to_line in *"$_to_tab"*) ;; *) _to_name= ;; esac
		is_case_var "$_to_name" || { take_over_failed "line $_to_n of $_to_t/carried.tsv is not NAME<TAB>VALUE with NAME a scenario variable's name"; return 1; }
		# Only the checked name goes through eval; the value is assigned from a variable.
		_to_value=${_to_line#*"$_to_tab"}
		eval "$_to_name=\$_to_value"
		_to_names="$_to_names$_to_name "
	done < "$_to_t/carried.tsv"
	note "taken over from $_to_t: $(ls "$IMG" | wc -l) image files; carried: $_to_names"
}
take_over_failed() { case_end FAIL "nothing to restore: $1" error; }
