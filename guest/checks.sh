# cr-guest guest checks that are more than one command: sh checks.sh NAME ARGS...
# Run by run-tests under setsid and a timeout; exit 0 means PASS.

# An attach to a process that is not our child (what CRIU does to every task it dumps).
ptrace_attach() { # strace
	rm -f /run/cr-guest/attach.pid
	# The target writes its own pid and execs: a process that is not our child.
	setsid -f sh -c 'echo $$ > /run/cr-guest/attach.pid; exec sleep 60' > /dev/null 2>&1
	i=0; while [ ! -s /run/cr-guest/attach.pid ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
	target=$(cat /run/cr-guest/attach.pid 2>/dev/null) || { echo "no target process"; return 1; }
	sleep 0.2
	timeout -s INT 2 "$1" -p "$target" -o /dev/null 2> /run/cr-guest/attach.err
	kill "$target" 2>/dev/null
	cat /run/cr-guest/attach.err
	if grep -q "Process $target attached" /run/cr-guest/attach.err; then echo "attached to $target"; else return 1; fi
}

# /proc/config.gz against IN/requested.conf (CONFIG_X=v and "# CONFIG_X is not set" lines).
kernel_config() {
	[ -r /proc/config.gz ] || { echo "no /proc/config.gz (CONFIG_IKCONFIG_PROC is off)"; return 1; }
	[ -s "$IN/requested.conf" ] || { echo "no requested symbols given"; return 0; }
	zcat /proc/config.gz > /run/cr-guest/running.config
	bad=0; n=0
	while IFS= read -r line; do
		case "$line" in
		CONFIG_*=*) sym=${line%%=*}; want=${line#*=} ;;
		"# CONFIG_"*" is not set") sym=${line#\# }; sym=${sym%% *}; want=n ;;
		*) continue ;;
		esac
		n=$((n + 1))
		got=$(sed -n "s/^$sym=//p" /run/cr-guest/running.config)
		[ -n "$got" ] || got=n
		if [ "$got" != "$want" ]; then echo "$sym: requested $want, running $got"; bad=$((bad + 1)); fi
	done < "$IN/requested.conf"
	echo "$((n - bad))/$n requested symbols as requested in the running kernel"
	[ "$bad" -eq 0 ]
}

name=$1; shift
"$name" "$@"
