#!/usr/bin/env bash
# Cluster test with docker compose: builds the image, starts three nodes, and
# runs the Maclaurin job through them twice, first killing one node mid-run
# (docker kill), then cutting one off the network mid-run (docker network
# disconnect). Each time every job must resolve exactly once, the sum must be
# exact and the stats must show the loss. Then a user program (examples/myjobs)
# ships itself to two stock nodes and must get its own jobs' exact answer.
# Always takes the cluster down.
set -euo pipefail
cd "$(dirname "$0")/.."

if docker compose version >/dev/null 2>&1; then
    dc=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    dc=(docker-compose)
else
    echo "cluster test: neither 'docker compose' nor 'docker-compose' is installed" >&2
    exit 1
fi
export COMPOSE_PROJECT_NAME=ppclustertest
export PP_IMAGE=${PP_IMAGE:-ppcluster:latest}
work=$(mktemp -d)
down() { "${dc[@]}" down --volumes --remove-orphans >/dev/null 2>&1 || true; }
trap 'down; rm -rf "$work"' EXIT

scripts/docker-build.sh 2> >(grep -v -e DEPRECATED -e buildx -e 'docs.docker.com' -e '^$' >&2)
# A fresh generated key for this test's cluster, made by the image itself.
if [ -z "${PP_SECRET:-}" ]; then
    docker run --rm --user "$(id -u)" -v "$work:/keys" --entrypoint /ppclient "$PP_IMAGE" \
        secret new /keys/pp.key >/dev/null
    PP_SECRET=$(cat "$work/pp.key")
fi
export PP_SECRET
image_mb=$(( $(docker image inspect "$PP_IMAGE" --format '{{.Size}}') / 1024 / 1024 ))
down
t0=$(date +%s%N)
"${dc[@]}" up -d node1 node2 node3 >/dev/null 2>&1

container() { "${dc[@]}" ps -q "$1"; }
wait_healthy() {
    local c
    for _ in $(seq 1 60); do
        local all=1
        for svc in "$@"; do
            c=$(container "$svc")
            [ "$(docker inspect -f '{{.State.Health.Status}}' "$c" 2>/dev/null)" = healthy ] || all=0
        done
        [ "$all" = 1 ] && return 0
        sleep 0.5
    done
    echo "cluster test: nodes $* never became healthy" >&2
    return 1
}
wait_healthy node1 node2 node3
ready_ms=$(( ($(date +%s%N) - t0) / 1000000 ))

terms=${PP_CLUSTER_TERMS:-6400000000}
run_client() { # $1: output file; runs in the background
    "${dc[@]}" run --rm -T --no-deps client run maclaurin --nodes node1,node2,node3 \
        --ncpus 0 --terms "$terms" --json >"$1" 2>"$1.err" &
    client_pid=$!
}

# Checks the client's JSON; prints the stats table and one summary word.
check() { # $1: scenario, $2: output file, $3: the service that was lost
    python3 - "$1" "$2" "$3" <<'PY'
import json, sys
scenario, path, lost = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    r = json.load(open(path))
except Exception as e:
    print(f"{scenario}: no result ({e}): {open(path + '.err').read()}")
    sys.exit(1)
total = sum(n["jobs"] for n in r["nodes"])
print(f"{scenario}: Job execution statistics:")
print(" job count | % of all jobs | job time sum | time per job | job server | state")
for n in r["nodes"]:
    share = 100.0 * n["jobs"] / total if total else 0.0
    per = n["job_time_s"] / n["jobs"] if n["jobs"] else 0.0
    print(f" {n['jobs']:>9} | {share:>13.2f} | {n['job_time_s']:>12.4f} | {per:>12.6f} | {n['node']} | {n['state']}")
print(f"{r['submitted']} submitted: {r['succeeded']} succeeded, {r['failed']} failed, "
      f"{r['active']} active, {r['retried']} retried; sum {r['sum']!r} vs exact {r['exact']!r}; {r['seconds']:.2f} s")
problems = []
if r["succeeded"] != r["tasks"] or r["submitted"] != r["tasks"] or r["failed"] or r["active"]:
    problems.append("not every job resolved exactly once")
if total != r["tasks"]:
    problems.append(f"stats count {total} jobs, not {r['tasks']}")
if r["relative_error"] > 1e-9:
    problems.append(f"sum off by {r['relative_error']:e}")
if r["retried"] < 1:
    problems.append("no job was rescheduled: the loss did not show")
node = next((n for n in r["nodes"] if n["node"].startswith(lost + ":")), None)
if node is None or node["state"].startswith("Up"):
    problems.append(f"{lost} is not shown as lost: {node}")
if problems:
    print(f"{scenario}: FAILED: " + "; ".join(problems))
    sys.exit(1)
print(f"{scenario}: ok ({r['tasks']}/{r['tasks']} jobs once, sum exact, {r['retried']} retried, {lost} {node['state']})")
PY
}

# 1. docker kill of a node mid-run.
run_client "$work/kill.json"
sleep 1.5
docker kill "$(container node2)" >/dev/null
wait "$client_pid" || true
check kill "$work/kill.json" node2 | tee "$work/kill.txt"

# 2. A node cut off the network mid-run (found by the heartbeat).
"${dc[@]}" up -d node2 >/dev/null 2>&1
wait_healthy node2
network="${COMPOSE_PROJECT_NAME}_default"
run_client "$work/cut.json"
sleep 1.5
docker network disconnect "$network" "$(container node3)"
wait "$client_pid" || true
check disconnect "$work/cut.json" node3 | tee "$work/cut.txt"

# 3. A user program with jobs of its own (examples/myjobs) on the stock nodes:
# it ships itself; its jobs run in program workers inside the node containers.
"${dc[@]}" --profile ship run --rm -T --no-deps myjobs node1:60000 node2:60000 \
    >"$work/ship.txt" 2>"$work/ship.err" || true
python3 - "$work/ship.txt" "$work/ship.err" <<'PY'
import sys
out, err = open(sys.argv[1]).read(), open(sys.argv[2]).read()
exact = sum(1 for n in range(1_000_000) if sum(map(int, str(n))) % 7 == 0)
want = f"lucky numbers below 1000000: {exact}"
if want not in out or "hello myjobs, from process" not in out:
    print(f"ship: FAILED: wanted {want!r} and a greeting; got {out!r} {err[-2000:]!r}")
    sys.exit(1)
print(f"ship: ok ({want}; the jobs ran on stock nodes)")
PY

# 4. A map-reduce with kept results (examples/myjobs/src/bin/wordcount.rs) on
# the stock nodes: the same table as the same program on this machine's pool.
"${dc[@]}" --profile ship run --rm -T --no-deps wordcount node1:60000 node2:60000 \
    >"$work/wc.txt" 2>"$work/wc.err" || true
target/docker/wordcount >"$work/wc-local.txt" 2>/dev/null || true
python3 - "$work/wc.txt" "$work/wc.err" "$work/wc-local.txt" <<'PY'
import sys
out, err, local = (open(p).read() for p in sys.argv[1:4])
if not out.startswith("words: ") or out != local:
    print(f"wordcount: FAILED: nodes gave {out!r}, the local pool {local!r}; {err[-2000:]!r}")
    sys.exit(1)
# Two nodes listening on all addresses: tables merged across them move node
# to node (each node reaches the other at the address the client used).
moved = [l for l in err.splitlines() if l.startswith("tables moved node to node: ")]
if not moved or int(moved[-1].rsplit(" ", 1)[1]) < 1:
    print(f"wordcount: FAILED: no table moved node to node; {err[-2000:]!r}")
    sys.exit(1)
print(f"wordcount: ok ({out.splitlines()[0]}; {'; '.join(err.strip().splitlines()[-2:])})")
PY

echo "cluster test: OK: docker kill and network disconnect mid-run, every job resolved once, sums exact; a user program shipped to stock nodes ran its own jobs; a kept-results map-reduce matched the local pool; image ${image_mb} MB, nodes healthy ${ready_ms} ms after 'up'"
