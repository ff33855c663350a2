# 8. CRIU on a kernel without CONFIG_MEMBARRIER (reproduced with a seccomp filter returning
#    ENOSYS for membarrier): CRIU >= 3.19 fails every command in its kerndat probe; the
#    membarrier patch (or CRIU < 3.19) starts. MEMBARRIER_PROBE is fatal|tolerant from the host.
. "$HERE/scenario-lib.sh"
case_begin check
# CRIU caches its kernel probes (kerndat) in /run/criu.kdat, and the other scenarios' CRIUs
# run beside this one: with the guest's /run it could load a cache written without the filter
# (the probe never runs: "Looks good"), or leave one written under it (a tolerant CRIU saves
# "no membarrier" for the others). So this CRIU gets a /run of its own: a tmpfs in a private
# mount namespace; its log goes to a directory outside /run and is copied back.
PRIV=/tmp/crg-enosys; rm -rf "$PRIV"; mkdir -p "$PRIV"
echo "+ crg-seccomp-enosys criu check (own /run)" >> "$CDIR/out.log"
# shellcheck disable=SC2016
DIAG_LOG=$PRIV/check.log run_bounded "$STEP_TIMEOUT" "$CDIR/diag.txt" \
	unshare --mount --propagation private sh -c 'mount -t tmpfs -o mode=755 crg-run /run && exec crg-seccomp-enosys "$1" check -v4 -o "$2"' sh "$CRIU" "$PRIV/check.log" >> "$CDIR/out.log" 2>&1
RC=$?
cp "$PRIV/check.log" "$CDIR/check.log" 2>/dev/null
rm -rf "$PRIV"
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
