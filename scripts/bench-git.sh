#!/usr/bin/env bash
# Benchmark of `kubeward git` on a generated history, next to `git log` reading the same
# history.
#
#   scripts/bench-git.sh                                   # 10,000 commits, 500 manifests
#   COMMITS=2000 MANIFESTS=100 scripts/bench-git.sh
#
# Environment:
#   COMMITS    commits to generate (default 10000)
#   MANIFESTS  manifest files (default 500)
#   SEED       generator seed (default 7)
#   BENCH_DIR  where the repository goes (default /tmp/kubeward-bench-git)
#   RUNS       timed runs per command (default 5)
#
# Steps: generate the repository with scripts/gen_git_history.py piped into `git fast-import`
# (deterministic: same seed, same commit ids; kept between runs), build the release binary,
# check that kubeward finds exactly the generator's ground truth (widened and bound findings),
# then time with hyperfine and print commits/s.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
COMMITS="${COMMITS:-10000}"
MANIFESTS="${MANIFESTS:-500}"
SEED="${SEED:-7}"
DIR="${BENCH_DIR:-/tmp/kubeward-bench-git}"
RUNS="${RUNS:-5}"
REPO="$DIR/history-$COMMITS-$MANIFESTS-$SEED.git"

die() {
    echo "bench-git.sh: error: $*" >&2
    exit 1
}
note() { echo "==> $*" >&2; }

for t in python3 cargo git hyperfine; do
    command -v "$t" >/dev/null 2>&1 || die "$t is needed"
done

mkdir -p "$DIR"
if [ ! -f "$REPO/truth.json" ]; then
    note "generating $COMMITS commits over $MANIFESTS manifests in $REPO"
    rm -rf "$REPO"
    git init -q --bare -b main "$REPO"
    python3 "$SCRIPT_DIR/gen_git_history.py" --commits "$COMMITS" --manifests "$MANIFESTS" \
        --seed "$SEED" 2>"$REPO/truth.json.tmp" | git -C "$REPO" fast-import --quiet
    mv "$REPO/truth.json.tmp" "$REPO/truth.json"
fi
note "ground truth: $(cat "$REPO/truth.json")"

note "building the release binary"
(cd "$ROOT" && cargo build --release -q -p kubeward)
KW="$ROOT/target/release/kubeward"

note "checking the findings against the ground truth"
"$KW" git "$REPO" --format json 2>"$DIR/stderr.txt" >"$DIR/findings.jsonl"
python3 - "$REPO/truth.json" "$DIR/findings.jsonl" <<'EOF'
import collections, json, sys
truth = json.load(open(sys.argv[1]))
got = collections.Counter(json.loads(l)["change"] for l in open(sys.argv[2]))
want = {"widened": truth["widened"], "bound": truth["bound"]}
if dict(got) != want:
    sys.exit(f"findings {dict(got)} differ from the ground truth {want}")
print(f"findings match the ground truth: {want}", file=sys.stderr)
EOF
cat "$DIR/stderr.txt" >&2

note "timing ($RUNS runs each)"
hyperfine -N -w 1 -r "$RUNS" --export-json "$DIR/hyperfine.json" \
    "$KW git $REPO --format json" \
    "$KW git $REPO --format json --all-parents" \
    "git -C $REPO log --first-parent --format=%H --raw -- '*.yaml'" \
    >&2

python3 - "$DIR/hyperfine.json" "$COMMITS" "$REPO" "$KW" <<'EOF'
import json, sys
runs = json.load(open(sys.argv[1]))["results"]
commits = int(sys.argv[2])
print("| command | wall time (mean ± σ) | commits/s |")
print("|---|---:|---:|")
for r in runs:
    cmd = r["command"].replace(sys.argv[3], "REPO").replace(sys.argv[4], "kubeward")
    print(f"| `{cmd}` | {r['mean']:.3f} s ± {r['stddev']:.3f} | {commits / r['mean']:,.0f} |")
EOF
