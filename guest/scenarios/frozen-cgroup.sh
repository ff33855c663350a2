# 4. The target sits in a frozen cgroup (as after a runtime's pause). Dump it without
#    --freeze-cgroup, then with it, and record what really happens: a hang (caught by the
#    timeout, with /proc/<pid>/{wchan,stack} and cgroup.events), an error, or success.
. "$HERE/scenario-lib.sh"
CG=/sys/fs/cgroup/crg-$SCENARIO
frozen_target() {
	rmdir "$CG" 2>/dev/null; mkdir -p "$CG"
	pid=$(start_session sh -c 'while :; do sleep 0.2; done')
	echo "$pid" > "$CG/cgroup.procs"
	echo 1 > "$CG/cgroup.freeze"
	i=0; while ! grep -q '^frozen 1' "$CG/cgroup.events" && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
	echo "$pid"
}
cleanup() { echo 0 > "$CG/cgroup.freeze" 2>/dev/null; kill_tree "$1"; sleep 0.2; rmdir "$CG" 2>/dev/null; }

case_begin without-freeze-cgroup
pid=$(frozen_target)
note "target $pid in $CG: $(cat "$CG/cgroup.events" | tr '\n' ' ')"
DIAG_PIDS=$pid DIAG_CGROUP=$CG criu_run dump dump -t "$pid" -D "$IMG"
case $RC in
0) case_end PASS "dump of a frozen task succeeded without --freeze-cgroup" success ;;
124) case_end FAIL "hang: dump did not finish in ${STEP_TIMEOUT}s (diagnostics: wchan/stack of CRIU and the target, cgroup.events)" hang ;;
*) case_end FAIL "error: $(err_of dump)" error ;;
esac
cleanup "$pid"

case_begin with-freeze-cgroup
pid=$(frozen_target)
DIAG_PIDS=$pid DIAG_CGROUP=$CG criu_run dump dump -t "$pid" -D "$IMG" --freeze-cgroup "$CG"
if [ $RC -eq 0 ]; then
	echo 0 > "$CG/cgroup.freeze" 2>/dev/null
	criu_run restore restore -D "$IMG" -d
	if [ $RC -eq 0 ] && alive "$pid"; then case_end PASS "dumped with --freeze-cgroup and restored" success
	else case_end FAIL "dumped with --freeze-cgroup, restore: $(err_of restore)" "$(outcome_of $RC)"; fi
else
	[ $RC -eq 124 ] && case_end FAIL "hang with --freeze-cgroup (diagnostics recorded)" hang || case_end FAIL "error: $(err_of dump)" error
fi
cleanup "$pid"
