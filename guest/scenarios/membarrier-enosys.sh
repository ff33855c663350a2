# 8. CRIU on a kernel without CONFIG_MEMBARRIER (reproduced with a seccomp filter returning
#    ENOSYS for membarrier): CRIU >= 3.19 fails every command in its kerndat probe; the
#    membarrier patch (or CRIU < 3.19) starts. MEMBARRIER_PROBE is fatal|tolerant from the host.
. "$HERE/scenario-lib.sh"
case_begin check
# CRIU caches its kernel probes (kerndat) under /run: drop the cache so the probe really runs
# under the filter, and again afterwards so no later run inherits what it saw here.
drop_kdat() { rm -f /run/criu.kdat /run/criu/criu.kdat; }
drop_kdat
echo "+ crg-seccomp-enosys criu check" >> "$CDIR/out.log"
DIAG_LOG=$CDIR/check.log run_bounded "$STEP_TIMEOUT" "$CDIR/diag.txt" crg-seccomp-enosys "$CRIU" check -v4 -o "$CDIR/check.log" >> "$CDIR/out.log" 2>&1
RC=$?
drop_kdat
fatal=no
grep -q "kerndat_has_membarrier_get_registrations failed" "$CDIR/check.log" && fatal=yes
note "rc=$RC, kerndat membarrier failure: $fatal, expected: ${MEMBARRIER_PROBE:-unknown}"
case "${MEMBARRIER_PROBE:-}:$fatal" in
fatal:yes) case_end PASS "reproduced: $(err_of check)" error ;;
fatal:no) case_end FAIL "expected the kerndat membarrier failure, got rc=$RC" "$(outcome_of $RC)" ;;
tolerant:no) [ $RC -eq 0 ] && case_end PASS "starts without membarrier" success || case_end FAIL "rc=$RC: $(err_of check)" error ;;
tolerant:yes) case_end FAIL "membarrier probe is fatal although it should be tolerated: $(err_of check)" error ;;
*) case_end FAIL "no expectation given (MEMBARRIER_PROBE)" "$(outcome_of $RC)" ;;
esac
