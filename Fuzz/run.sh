#!/usr/bin/env bash
# `make fuzz`: builds the libFuzzer targets of Fuzz/ with AddressSanitizer and runs each for FUZZ_SECONDS
# (default 60), or until FUZZ_RUNS executions when that comes first (default: no such limit; README's figures
# come from FUZZ_RUNS=10000000 FUZZ_SECONDS=1800). FUZZ_TARGETS picks some (space-separated names). Seeds come
# from Fuzz/Seeds, the tests' fixtures and ../shared/corpus when present; each target has a dictionary of its
# grammar in Fuzz/Dictionaries.
# An input slower than 1 s, or a process over 512 MiB, counts as a finding like a crash or a leak. The memory
# bound holds for a process whose AddressSanitizer keeps 32 MiB of freed memory quarantined (to catch uses after
# free), not the default 256 MiB: with that, quarantine alone took FuzzMailToACS over 512 MiB with 27 MiB live.
# libFuzzer's timeout is wall-clock time, so on a loaded machine FUZZ_TIMEOUT (seconds, default 1) can be raised
# to keep a long run going: inputs slower than 1 s are still written as slow-unit-* findings, to be timed again
# alone.
# Working corpora and findings stay in Fuzz/.build/fuzz (findings: artifacts/<target>/); a summary line per
# target is printed at the end, and the exit status is 1 when any target found something. lsan.supp names the
# leaks of the toolchain's own libraries that are not findings.
set -euo pipefail
cd "$(dirname "$0")"
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_RUNS=${FUZZ_RUNS:--1}
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-1}
ALL="FuzzSMTPCommand FuzzFraming FuzzSession FuzzMailToACS FuzzHeaderFields FuzzAdminHTTP \
    FuzzACSResponses FuzzConfiguration FuzzAuthExchange"
TARGETS=${FUZZ_TARGETS:-$ALL}
REPO=..
CORPUS=$REPO/../shared/corpus
WORK=.build/fuzz

swift build -c debug -Xswiftc -sanitize=fuzzer,address -Xswiftc -enable-testing 2>&1 | grep -v 'ld.gold: warning'

# seed <target>: fills $WORK/seeds/<target> from the repository (and the shared corpus when present).
seed() {
    local target=$1 dir=$WORK/seeds/$1
    rm -rf "$dir" && mkdir -p "$dir"
    case $target in
    FuzzSMTPCommand)
        # The command lines of the parser's own test tables, one per file.
        grep -ohE 'line: "[^"]*"' $REPO/Tests/SMTPProtocolTests/SMTPCommandTests.swift | sed 's/^line: "//; s/"$//' \
            | awk -v dir="$dir" '{ printf "%s", $0 > (dir "/line" NR) }'
        ;;
    FuzzFraming)
        # Two seed octets for the chunk sizes, then a session after MAIL and RCPT.
        for file in Seeds/session/*; do { printf 'A7'; cat "$file"; } > "$dir/$(basename "$file")"; done
        ;;
    FuzzSession) cp Seeds/session/* "$dir" ;;
    FuzzMailToACS)
        cp $REPO/Tests/ACSEmailTests/Fixtures/mime-to-acs/*.eml "$dir"
        find $REPO/Tests/MailParserTests/Fixtures -name '*.eml' -exec cp {} "$dir" \;
        if [ -d "$CORPUS" ]; then
            find "$CORPUS" \( -name '*.eml' -o -name 'msg_*.txt' \) -size -64k | while read -r file; do
                cp "$file" "$dir/$(echo "$file" | md5sum | cut -c1-12).eml"
            done
        fi
        ;;
    FuzzHeaderFields)
        # The values of address, subject and MIME fields of the same messages, one per file.
        local sources=($REPO/Tests/ACSEmailTests/Fixtures/mime-to-acs/*.eml)
        [ -d "$CORPUS" ] && mapfile -t -O ${#sources[@]} sources < <(find "$CORPUS" -name '*.eml' -size -64k)
        grep -hiE '^(from|to|cc|reply-to|subject|content-type|content-disposition):' "${sources[@]}" \
            | sed -E 's/^[^:]*: ?//' | sort -u | head -2000 \
            | awk -v dir="$dir" '{ printf "%s", $0 > (dir "/field" NR) }'
        ;;
    FuzzAdminHTTP) cp Seeds/admin-http/* "$dir" ;;
    FuzzAuthExchange) cp Seeds/auth/* "$dir" ;;
    FuzzACSResponses) cp Seeds/acs-responses/* "$dir" ;;
    FuzzConfiguration)
        # The packaged file as shipped (all comments) and with its keys uncommented, a few hand-written files,
        # and the one-line documents of the loader's tests (`yaml: "…"`, Swift escapes undone).
        cp Seeds/configuration/* "$dir"
        cp $REPO/etc/acs-smtp-gateway/gateway.conf "$dir/gateway.conf"
        sed -E 's/^  #([a-z_]+:)/  \1/' $REPO/etc/acs-smtp-gateway/gateway.conf > "$dir/gateway-uncommented.conf"
        grep -ohE 'yaml: "([^"\\]|\\.)*"' $REPO/Tests/GatewayTests/ConfigurationTests.swift | sed 's/^yaml: "//; s/"$//' \
            | awk '{ print NR "\t" $0 }' | while IFS=$'\t' read -r n text; do
                printf '%b' "${text//\\\"/\"}" > "$dir/test$n.conf"
            done
        ;;
    esac
}

dictionary() {
    case $1 in
    FuzzSMTPCommand | FuzzFraming | FuzzSession) echo Dictionaries/smtp.dict ;;
    FuzzMailToACS) echo Dictionaries/mail.dict ;;
    FuzzHeaderFields) echo Dictionaries/header.dict ;;
    FuzzAdminHTTP) echo Dictionaries/http.dict ;;
    FuzzACSResponses) echo Dictionaries/acs.dict ;;
    FuzzConfiguration) echo Dictionaries/config.dict ;;
    FuzzAuthExchange) echo Dictionaries/auth.dict ;;
    esac
}

status=0
summary=()
for target in $TARGETS; do
    seed "$target"
    mkdir -p "$WORK/corpus/$target" "$WORK/artifacts/$target"
    max_len=4096
    [ "$target" = FuzzMailToACS ] && max_len=65536
    [ "$target" = FuzzConfiguration ] && max_len=32768  # the packaged gateway.conf is a seed
    log=$WORK/$target.log
    echo "== $target: $FUZZ_SECONDS s"
    set +e
    # SWIFT_BACKTRACE=enable=no: on a trap (a failed precondition), Swift's own backtracer copies stack memory
    # that AddressSanitizer poisons, and ASan then reports a stack-buffer-overflow in memserver_read
    # (CrashHandlerLinux.cpp) instead of the trap; without it libFuzzer reports the trap as a deadly signal,
    # after the runtime's message that names the broken invariant.
    SWIFT_BACKTRACE=${SWIFT_BACKTRACE:-enable=no} ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:quarantine_size_mb=32} \
        LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=lsan.supp:print_suppressions=0} \
        ".build/debug/$target" "$WORK/corpus/$target" "$WORK/seeds/$target" \
        -dict="$(dictionary "$target")" -max_total_time="$FUZZ_SECONDS" -runs="$FUZZ_RUNS" \
        -timeout="$FUZZ_TIMEOUT" -report_slow_units=1 -rss_limit_mb=512 -max_len=$max_len -print_final_stats=1 \
        -artifact_prefix="$WORK/artifacts/$target/" >"$log" 2>&1
    result=$?
    set -e
    runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo 0)
    speed=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo 0)
    coverage=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -1)
    findings=$(find "$WORK/artifacts/$target" -type f | wc -l)
    summary+=("$target: $runs executions, $speed exec/s, $coverage, $findings findings (exit $result)")
    if [ "$result" -ne 0 ] || [ "$findings" -ne 0 ]; then
        status=1
        grep -E 'ERROR|Fatal error|Precondition failed|SUMMARY' "$log" | head -5 || true
    fi
done
printf '%s\n' "${summary[@]}"
exit $status
