# cr-guest guest checks that are more than one command: sh checks.sh NAME ARGS...
# Run by run-tests under setsid and a timeout; exit 0 means PASS. Variable names and waits
# follow the rules at the top of lib.sh (a wait that runs out fails the check, saying so).

# An attach to a process that is not our child (what CRIU does to every task it dumps).
ptrace_attach() { # strace
	rm -f /run/cr-guest/attach.pid
	# The target writes its own pid and execs: a process that is not our child.
	setsid -f sh -c 'echo $$ > /run/cr-guest/attach.pid; exec sleep 60' > /dev/null 2>&1
	_pat_i=0; while [ ! -s /run/cr-guest/attach.pid ] && [ $_pat_i -lt 200 ]; do sleep 0.025; _pat_i=$((_pat_i + 1)); done
	_pat_target=$(cat /run/cr-guest/attach.pid 2>/dev/null)
	[ -n "$_pat_target" ] || { echo "no target process: timed out after 200 polls waiting for its pid in /run/cr-guest/attach.pid"; return 1; }
	# Attach once it runs sleep (an attach during its exec would see the shell).
	_pat_sleep=$(command -v sleep)
	_pat_i=0; while [ "$(readlink /proc/"$_pat_target"/exe 2>/dev/null)" != "$_pat_sleep" ] && [ $_pat_i -lt 200 ]; do sleep 0.025; _pat_i=$((_pat_i + 1)); done
	if [ "$(readlink /proc/"$_pat_target"/exe 2>/dev/null)" != "$_pat_sleep" ]; then
		kill "$_pat_target" 2>/dev/null
		echo "timed out after 200 polls waiting for the target $_pat_target to run $_pat_sleep"; return 1
	fi
	timeout -s INT 2 "$1" -p "$_pat_target" -o /dev/null 2> /run/cr-guest/attach.err &
	_pat_spid=$!
	# strace says it attached at once: stop it then, not after its 2 s (timeout relays the INT).
	# A wait that runs out is judged below: no "attached" line, the check fails with strace's output.
	_pat_i=0; while ! grep -q "Process $_pat_target attached" /run/cr-guest/attach.err && [ $_pat_i -lt 80 ]; do sleep 0.025; _pat_i=$((_pat_i + 1)); done
	kill -INT "$_pat_spid" 2>/dev/null
	wait "$_pat_spid"
	kill "$_pat_target" 2>/dev/null
	cat /run/cr-guest/attach.err
	if grep -q "Process $_pat_target attached" /run/cr-guest/attach.err; then echo "attached to $_pat_target"; else return 1; fi
}

# /proc/config.gz against IN/requested.conf (CONFIG_X=v and "# CONFIG_X is not set" lines).
kernel_config() {
	[ -r /proc/config.gz ] || { echo "no /proc/config.gz (CONFIG_IKCONFIG_PROC is off)"; return 1; }
	[ -s "$IN/requested.conf" ] || { echo "no requested symbols given"; return 0; }
	zcat /proc/config.gz > /run/cr-guest/running.config
	# One awk pass over both files: a sed per symbol cost 18 s under TCG.
	awk '
		FNR == NR { if (match($0, /^CONFIG_[A-Za-z0-9_]+=/)) run[substr($0, 1, RLENGTH - 1)] = substr($0, RLENGTH + 1); next }
		/^CONFIG_[A-Za-z0-9_]+=/ { i = index($0, "="); sym = substr($0, 1, i - 1); want = substr($0, i + 1) }
		/^# CONFIG_[A-Za-z0-9_]+ is not set/ { sym = $2; want = "n" }
		sym == "" { next }
		{ n++; got = (sym in run) ? run[sym] : "n"; if (got != want) { print sym ": requested " want ", running " got; bad++ }; sym = "" }
		END { print (n - bad) "/" n " requested symbols as requested in the running kernel"; exit bad > 0 }
	' /run/cr-guest/running.config "$IN/requested.conf"
}

name=$1; shift
"$name" "$@"
