#!/usr/bin/env bash
# A taskstore worker with no Python: bash, curl and jq against the HTTP API (SPEC §10).
#
#   TASKSTORE_TOKEN=secret QUEUE=work curl_worker.sh http://127.0.0.1:8000
#
# It claims up to $BATCH tasks at a time from $QUEUE (POST /api/v1/claims, waiting up to $BLOCK_FOR seconds
# for one to be ready) and works each by its arguments ({"args": [...], "kwargs": {"n": N, "progress": bool,
# "fail_first": bool}}, the shape a Python App enqueues; n may also be the first positional argument):
#   - progress: POST /tasks/{id}/report with data, which also renews the lease;
#   - fail_first on the first attempt: POST /tasks/{id}/fail with a failure (retryable, retried at once);
#   - otherwise POST /tasks/{id}/done with the result 3 * n + 1, or, when n is not a number, /fail with a
#     failure that is not retryable (the task goes dead at once).
# Every write carries the worker id and the lease token the claim returned, so the store fences it as it
# fences a Python worker's. A refused write (409: the lease was lost) is recorded and the task left alone.
#
# It stops when $STOP_FILE exists, after $IDLE_EXIT claims in a row came back empty (0: never), or on SIGTERM or
# SIGINT: then it finishes the task in hand and gives the rest of its batch back (POST /tasks/{id}/unclaim,
# no attempt spent) rather than leave them to wait out their lease.
# With $RECORD set, each execution appends one JSON line to that file: id, attempt, outcome, HTTP status.
set -euo pipefail

BASE=${1:?usage: curl_worker.sh BASE_URL (env: TASKSTORE_TOKEN QUEUE WORKER_ID BATCH BLOCK_FOR IDLE_EXIT STOP_FILE RECORD)}
QUEUE=${QUEUE:-default}
WORKER_ID=${WORKER_ID:-curl-$(hostname)-$$}
BATCH=${BATCH:-10}
BLOCK_FOR=${BLOCK_FOR:-1}
IDLE_EXIT=${IDLE_EXIT:-0}
STOP_FILE=${STOP_FILE:-}
RECORD=${RECORD:-/dev/null}

for tool in curl jq; do
  command -v "$tool" >/dev/null || { echo "curl_worker.sh: $tool is not installed" >&2; exit 2; }
done

# The token goes to curl in a header file, not on its command line, where any local user could read it (ps).
work_dir=$(mktemp -d)
trap 'rm -rf "$work_dir"' EXIT
headers="$work_dir/headers"
(umask 077 && printf 'Content-Type: application/json\n' >"$headers")
if [ -n "${TASKSTORE_TOKEN:-}" ]; then
  printf 'Authorization: Bearer %s\n' "$TASKSTORE_TOKEN" >>"$headers"
fi

# post PATH BODY: sets STATUS (000 when the server could not be reached) and BODY.
post() {
  local out
  out=$(curl -sS --max-time $((${BLOCK_FOR%.*} + 30)) -H @"$headers" -X POST --data-binary "$2" \
    -w '\n%{http_code}' "$BASE/api/v1$1") || out=$'\n000'
  STATUS=${out##*$'\n'}
  BODY=${out%$'\n'*}
}

record() {  # id attempt outcome status [extra JSON object]
  jq -cn --arg id "$1" --argjson attempt "$2" --arg outcome "$3" --arg status "$4" --arg worker "$WORKER_ID" \
    --argjson extra "${5:-{\}}" \
    '{id: $id, attempt: $attempt, by: "curl", worker: $worker, outcome: $outcome, status: ($status | tonumber)} + $extra' \
    >>"$RECORD"
}

# lease_body TOKEN [EXTRA JSON object]: the fenced body every worker write carries.
lease_body() {
  jq -cn --arg w "$WORKER_ID" --arg t "$1" --argjson extra "${2:-{\}}" '{worker_id: $w, token: $t} + $extra'
}

work_one() {  # one claimed task, as compact JSON
  local id token attempt result progress fail_first reported=false
  # n as a keyword or the first positional argument; a result of null means n is not a number.
  IFS=$'\t' read -r id token attempt result progress fail_first < <(
    jq -r '(.args.kwargs // {}) as $kw | [.id, .token, .attempts,
            (try (3 * ($kw.n // .args.args[0]) + 1) catch null), ($kw.progress // false), ($kw.fail_first // false)]
           | map(tostring) | @tsv' <<<"$1"
  )
  if [ "$progress" = true ]; then
    post "/tasks/$id/report" "$(lease_body "$token" '{"data": {"progress": 0.5, "by": "curl"}}')"
    if [ "$STATUS" != 200 ]; then
      record "$id" "$attempt" refused "$STATUS"
      return
    fi
    # The answer is the task with its lease's last report: the store kept what was sent.
    reported=$(jq '.claim.last_report.data.progress == 0.5' <<<"$BODY")
  fi
  if [ "$fail_first" = true ] && [ "$attempt" = 1 ]; then
    post "/tasks/$id/fail" "$(lease_body "$token" \
      '{"failure": {"type": "Flaky", "message": "the first attempt fails on purpose"}, "retry_in": 0}')"
    record "$id" "$attempt" "$([ "$STATUS" = 200 ] && echo failed || echo refused)" "$STATUS" \
      "{\"reported\": $reported}"
    return
  fi
  if [ "$result" = null ]; then  # bad arguments: retrying cannot help, so the task goes dead at once
    post "/tasks/$id/fail" "$(lease_body "$token" \
      '{"failure": {"type": "BadArguments", "message": "n must be a number", "retryable": false}}')"
    record "$id" "$attempt" "$([ "$STATUS" = 200 ] && echo dead || echo refused)" "$STATUS"
    return
  fi
  post "/tasks/$id/done" "$(lease_body "$token" "{\"result\": $result}")"
  record "$id" "$attempt" "$([ "$STATUS" = 200 ] && echo done || echo refused)" "$STATUS" \
    "{\"reported\": $reported, \"result\": $result}"
}

stopping=false
trap 'stopping=true' TERM INT  # bash runs it once the curl in hand returns: the loops below check it

claim_body=$(jq -cn --arg w "$WORKER_ID" --arg q "$QUEUE" --argjson limit "$BATCH" --argjson block "$BLOCK_FOR" \
  '{worker_id: $w, queues: [$q], limit: $limit, block_for: $block}')
idle=0
while [ "$stopping" = false ] && { [ -z "$STOP_FILE" ] || [ ! -e "$STOP_FILE" ]; }; do
  post /claims "$claim_body"
  if [ "$STATUS" != 200 ]; then
    echo "curl_worker.sh: claim answered $STATUS: $BODY" >&2
    sleep 1
    continue
  fi
  mapfile -t tasks < <(jq -c '.tasks[]' <<<"$BODY")
  if [ "${#tasks[@]}" -eq 0 ]; then
    idle=$((idle + 1))
    if [ "$IDLE_EXIT" -gt 0 ] && [ "$idle" -ge "$IDLE_EXIT" ]; then
      break
    fi
    continue
  fi
  idle=0
  for task in "${tasks[@]}"; do
    if [ "$stopping" = true ]; then
      IFS=$'\t' read -r id token < <(jq -r '[.id, .token] | @tsv' <<<"$task")
      post "/tasks/$id/unclaim" "$(lease_body "$token")"
      continue
    fi
    work_one "$task"
  done
done
