#!/usr/bin/env bash
# End-to-end benchmark of `kubeward detect` on a generated audit log, next to rg and jq.
#
#   scripts/bench.sh                                  # 1M events in /tmp/kubeward-bench
#   EVENTS=200000 BENCH_DIR=/tmp/kw-bench-small scripts/bench.sh
#
# Environment:
#   EVENTS     events to generate (default 1000000)
#   BENCH_DIR  where the log, the truth file and the results go (default /tmp/kubeward-bench)
#   GEN        the workload generator (default: ../../shared/bench/gen_audit.py from this script)
#   RUNS       timed runs per command (default 5; jq always runs once, it is slow)
#
# Stateful detection is timed twice: in memory (--stateful) and with a fresh state file
# (--state, the file removed before each run, so every run does the whole work).
#
# Steps: generate the log (once; kept between runs), build the release binary, check that the
# alerts are exactly the generator's ground truth (with and without the prefilter), warm the
# page cache, time rg / jq / kubeward with hyperfine (or a /usr/bin/time loop without it),
# measure kubeward's peak RSS, and print a Markdown table for the README.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
EVENTS="${EVENTS:-1000000}"
DIR="${BENCH_DIR:-/tmp/kubeward-bench}"
GEN="${GEN:-$(dirname "$0")/../../shared/bench/gen_audit.py}"
RUNS="${RUNS:-5}"
SEED=42

die() {
    echo "bench.sh: error: $*" >&2
    exit 1
}
note() { echo "==> $*" >&2; }

# --- tools -----------------------------------------------------------------------------------
missing=()
for t in python3 cargo; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
[[ -x /usr/bin/time ]] || missing+=("/usr/bin/time (GNU time: apt-get install time)")
if ((${#missing[@]})); then
    die "required tool(s) missing: ${missing[*]}"
fi
[[ -f "$GEN" ]] || die "workload generator not found at $GEN (set GEN=/path/to/gen_audit.py)"

HAVE_RG=1 HAVE_JQ=1 HAVE_HYPERFINE=1
command -v rg >/dev/null 2>&1 || { HAVE_RG=0; echo "bench.sh: note: rg (ripgrep) is not installed: the rg row is skipped (apt-get install ripgrep)" >&2; }
command -v jq >/dev/null 2>&1 || { HAVE_JQ=0; echo "bench.sh: note: jq is not installed: the jq row is skipped (apt-get install jq)" >&2; }
command -v hyperfine >/dev/null 2>&1 || { HAVE_HYPERFINE=0; echo "bench.sh: note: hyperfine is not installed: timing with a /usr/bin/time loop instead (apt-get install hyperfine)" >&2; }

# --- the log ---------------------------------------------------------------------------------
mkdir -p "$DIR"
if [[ "$EVENTS" == 1000000 ]]; then
    LOG="$DIR/audit-1m.jsonl"
    TRUTH="$DIR/truth.txt"
else
    LOG="$DIR/audit-$EVENTS.jsonl"
    TRUTH="$DIR/truth-$EVENTS.txt"
fi
if [[ ! -s "$LOG" || ! -f "$TRUTH" ]]; then
    note "generating $EVENTS events (seed $SEED) into $LOG"
    # Written aside and renamed, so that an interrupted run leaves no half file behind.
    python3 "$GEN" --events "$EVENTS" --seed "$SEED" --truth "$TRUTH.tmp" >"$LOG.tmp"
    mv "$TRUTH.tmp" "$TRUTH"
    mv "$LOG.tmp" "$LOG"
else
    note "reusing $LOG"
fi
LINES=$(wc -l <"$LOG" | tr -d ' ')
BYTES=$(wc -c <"$LOG" | tr -d ' ')
[[ "$LINES" -eq "$EVENTS" ]] || die "$LOG has $LINES lines, expected $EVENTS (delete it to regenerate)"

# --- build -----------------------------------------------------------------------------------
note "cargo build --release"
(cd "$ROOT" && cargo build --release --quiet)
KW="$ROOT/target/release/kubeward"
[[ -x "$KW" ]] || die "$KW was not built"

# --- correctness -----------------------------------------------------------------------------
# Sorted alert auditIDs must equal the sorted ground truth, in both modes.
ids() { python3 -c 'import json,sys
for l in sys.stdin:
    l = l.strip()
    if l:
        print(json.loads(l)["audit_id"])' | sort; }
sort "$TRUTH" >"$DIR/truth.sorted"
for mode in "" "--no-prefilter"; do
    # shellcheck disable=SC2086 # $mode is one flag or nothing
    "$KW" detect --format json -q $mode "$LOG" >"$DIR/alerts.json" ||
        die "kubeward detect ${mode:-(default)} failed on $LOG (exit $?)"
    ids <"$DIR/alerts.json" >"$DIR/alerts.sorted"
    if ! cmp -s "$DIR/alerts.sorted" "$DIR/truth.sorted"; then
        echo "bench.sh: CORRECTNESS FAILURE (kubeward detect ${mode:-(default)}): alerts differ from the ground truth $TRUTH" >&2
        echo "  alerts: $(wc -l <"$DIR/alerts.sorted"), truth: $(wc -l <"$DIR/truth.sorted")" >&2
        diff "$DIR/truth.sorted" "$DIR/alerts.sorted" | head -20 | sed 's/^/  /' >&2 || true
        exit 1
    fi
done
ALERTS=$(wc -l <"$DIR/truth.sorted" | tr -d ' ')
note "correct: $ALERTS alerts, equal to the ground truth, with and without the prefilter"
# Stateful detection reports only newly granted pod write, so its clusterrole-pod-write alerts
# must be a subset of the ground truth (which counts every write granting pod write).
STATE_DB="$DIR/bench-state.db"
rm -f "$STATE_DB" "$STATE_DB-wal" "$STATE_DB-shm"
"$KW" detect --format json -q --state "$STATE_DB" "$LOG" >"$DIR/alerts-state.json" ||
    die "kubeward detect --state failed on $LOG (exit $?)"
python3 - "$DIR/alerts-state.json" "$DIR/truth.sorted" <<'EOF2' || die "stateful alerts are not a subset of the ground truth"
import collections, json, sys
truth = set(open(sys.argv[2]).read().split())
alerts = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rules = collections.Counter(a["rule_id"] for a in alerts)
extra = [a["audit_id"] for a in alerts if a["rule_id"] == "clusterrole-pod-write" and a["audit_id"] not in truth]
if extra:
    print(f"bench.sh: {len(extra)} stateful clusterrole-pod-write alerts are not in the ground truth, e.g. {extra[:3]}", file=sys.stderr)
    sys.exit(1)
print("==> stateful: " + ", ".join(f"{n} {r}" for r, n in sorted(rules.items())) + " (clusterrole-pod-write alerts all in the ground truth)", file=sys.stderr)
EOF2

# --- timing ----------------------------------------------------------------------------------
note "warming the page cache"
cat "$LOG" >/dev/null

q() { printf '%q' "$1"; }
LOGQ=$(q "$LOG")
KWQ=$(q "$KW")
NAMES=()
CMDS=()
if ((HAVE_RG)); then
    NAMES+=("rg -c clusterroles")
    CMDS+=("rg -c clusterroles $LOGQ")
fi
STATEQ=$(q "$STATE_DB")
NAMES+=("kubeward detect" "kubeward detect --no-prefilter" "kubeward detect --stateful" "kubeward detect --state")
CMDS+=("$KWQ detect -q --format json $LOGQ > /dev/null" "$KWQ detect -q --no-prefilter --format json $LOGQ > /dev/null"
    "$KWQ detect -q --stateful --format json $LOGQ > /dev/null"
    "rm -f $STATEQ $STATEQ-wal $STATEQ-shm; $KWQ detect -q --state $STATEQ --format json $LOGQ > /dev/null")
JQ_NAME="jq select(.objectRef.resource==\"clusterroles\")"
JQ_CMD="jq -c 'select(.objectRef.resource==\"clusterroles\")' $LOGQ > /dev/null"

RESULTS="$DIR/results.tsv" # name, mean s, stddev s, runs
: >"$RESULTS"
if ((HAVE_HYPERFINE)); then
    args=()
    for i in "${!NAMES[@]}"; do
        args+=(-n "${NAMES[$i]}" "${CMDS[$i]}")
    done
    note "hyperfine: $RUNS runs each"
    hyperfine --warmup 1 --runs "$RUNS" --export-json "$DIR/hyperfine.json" "${args[@]}" >&2
    jsons=("$DIR/hyperfine.json")
    if ((HAVE_JQ)); then
        note "hyperfine: jq, 1 run"
        hyperfine --runs 1 --export-json "$DIR/hyperfine-jq.json" -n "$JQ_NAME" "$JQ_CMD" >&2
        jsons+=("$DIR/hyperfine-jq.json")
    fi
    python3 - "${jsons[@]}" >>"$RESULTS" <<'EOF'
import json, sys
for path in sys.argv[1:]:
    for r in json.load(open(path))["results"]:
        print(f'{r["command"]}\t{r["mean"]}\t{r["stddev"] or 0}\t{len(r["times"])}')
EOF
else
    # mean and standard deviation of wall times from /usr/bin/time, one run after a warm-up.
    time_runs() { # name runs command
        local name=$1 runs=$2 cmd=$3 t=()
        bash -c "$cmd" >/dev/null 2>&1 || true
        for ((k = 0; k < runs; k++)); do
            /usr/bin/time -f %e -o "$DIR/time.out" bash -c "$cmd" >/dev/null 2>&1 ||
                die "failed: $cmd"
            t+=("$(tail -1 "$DIR/time.out")")
        done
        python3 -c 'import statistics,sys
name=sys.argv[1]; t=[float(x) for x in sys.argv[2:]]
print(f"{name}\t{statistics.mean(t)}\t{statistics.stdev(t) if len(t) > 1 else 0}\t{len(t)}")' "$name" "${t[@]}"
    }
    for i in "${!NAMES[@]}"; do
        note "timing ${NAMES[$i]} ($RUNS runs)"
        time_runs "${NAMES[$i]}" "$RUNS" "${CMDS[$i]}" >>"$RESULTS"
    done
    if ((HAVE_JQ)); then
        note "timing jq (1 run)"
        time_runs "$JQ_NAME" 1 "$JQ_CMD" >>"$RESULTS"
    fi
fi

# --- peak RSS --------------------------------------------------------------------------------
RSS="$DIR/rss.tsv"
: >"$RSS"
for mode in "" "--no-prefilter" "--stateful" "--state"; do
    rm -f "$STATE_DB" "$STATE_DB-wal" "$STATE_DB-shm"
    extra=()
    [[ "$mode" == "--state" ]] && extra=("$STATE_DB")
    # shellcheck disable=SC2086
    /usr/bin/time -f %M -o "$DIR/time.out" "$KW" detect -q $mode "${extra[@]}" --format json "$LOG" >/dev/null
    kb=$(tail -1 "$DIR/time.out")
    printf 'kubeward detect%s\t%s\n' "${mode:+ $mode}" "$kb" >>"$RSS"
done

# --- report ----------------------------------------------------------------------------------
CPU=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //' || echo unknown)
COMMIT=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=""
[[ -n "$(cd "$ROOT" && git status --porcelain 2>/dev/null)" ]] && DIRTY="+dirty"
python3 - "$RESULTS" "$RSS" "$LINES" "$BYTES" "$ALERTS" "$(nproc)" "$CPU" "$COMMIT$DIRTY" "$(basename "$LOG")" <<'EOF'
import sys
results, rss_path, lines, size, alerts, cores, cpu, commit, logname = sys.argv[1:]
lines, size = int(lines), int(size)
rss = dict(l.rstrip("\n").split("\t") for l in open(rss_path) if l.strip())
print()
print(f"{lines:,} events ({size / 1e6:,.0f} MB, `{logname}` from `gen_audit.py --seed 42`, {alerts} alerts), "
      f"warm page cache, {cores} cores ({cpu}), kubeward {commit}:")
print()
print("| command | wall time (mean ± σ) | events/s | MB/s | peak RSS |")
print("|---|---:|---:|---:|---:|")
for l in open(results):
    if not l.strip():
        continue
    name, mean, sd, runs = l.rstrip("\n").split("\t")
    mean, sd, runs = float(mean), float(sd), int(runs)
    wall = f"{mean:.3f} s ± {sd:.3f}" if runs > 1 else f"{mean:.2f} s (1 run)"
    r = rss.get(name)
    mem = f"{int(r) / 1024:,.0f} MiB" if r else "—"
    print(f"| `{name}` | {wall} | {lines / mean:,.0f} | {size / 1e6 / mean:,.0f} | {mem} |")
print()
EOF
