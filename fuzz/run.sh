#!/usr/bin/env bash
# libFuzzer (with AddressSanitizer) over Tether's parsers: duration, toml, profile, sse, the
# authority's request bodies (request), the canonical signed form of a decision (decision) and
# RFC 3339 times (timestamp).
#   bash fuzz/run.sh [SECONDS] [TARGET...]     each target runs SECONDS (default 60) from the
#                                              committed seeds in fuzz/corpus/TARGET
# CI runs it briefly (bash fuzz/run.sh 15); longer runs are on demand (bash fuzz/run.sh 3600).
# Builds with swiftc -sanitize=fuzzer,address into .build-fuzz/ (TetherCore's sources, and the
# SSE parser or the request bodies, compiled with each target's entry point); what a run finds is kept there
# (crash-*, and the grown corpus in .build-fuzz/corpus-TARGET). Exits non-zero on a crash.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"; shift || true
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(duration toml profile sse request decision timestamp)
out=.build-fuzz
mkdir -p "$out"
core=$(find Sources/TetherCore -name '*.swift' | sort)
status=0
for t in "${targets[@]}"; do
    extra=""
    [ "$t" = sse ] && extra=Sources/TetherClient/SSEParser.swift
    # The request bodies and their decoder: Foundation and TetherCore only, by design.
    # (one module here: their `import TetherCore` is dropped from copies)
    if [ "$t" = request ]; then
        extra=""
        for f in Sources/TetherAuthority/HTTP/BodyDecoding.swift Sources/TetherAuthority/HTTP/Requests.swift; do
            grep -v '^import TetherCore$' "$f" > "$out/$(basename "$f")"
            extra="$extra $out/$(basename "$f")"
        done
    fi
    echo "== fuzz $t: build"
    # shellcheck disable=SC2086
    swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name TetherFuzz \
        $core $extra "fuzz/Targets/$t.swift" -o "$out/fuzz-$t" 2>&1 | grep -v "Cannot export local symbol" || true
    [ -x "$out/fuzz-$t" ] || { echo "FAIL fuzz $t: did not build"; status=1; continue; }
    mkdir -p "$out/corpus-$t"
    echo "== fuzz $t: ${secs}s"
    if (cd "$out" && ./"fuzz-$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
            "corpus-$t" "../fuzz/corpus/$t" > "log-$t.txt" 2>&1); then
        echo "ok   fuzz $t: $(grep -o 'stat::number_of_executed_units: [0-9]*' "$out/log-$t.txt" | awk '{print $2}') runs, no crash"
    else
        echo "FAIL fuzz $t: see $out/log-$t.txt and $out/crash-*"; tail -30 "$out/log-$t.txt"; status=1
    fi
done
exit $status
