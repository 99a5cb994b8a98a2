#!/usr/bin/env bash
# A remote-support session on this machine, in one command:
#
#   ./demo.sh               windows: the agent's viewer and the customer's banner
#                           (needs a display; the customer shares it)
#   ./demo.sh --headless    no windows: the customer shares an animated
#                           1920x1080 terminal, and a live line shows the frame
#                           rate, bandwidth and latency at the agent
#   --seconds=N             end after N seconds (default: when you press Ctrl-C
#                           or close the agent's window)
#
# It builds the relay, the portal and the two apps (release), and in a scratch
# directory it makes a portal with its root key, a relay with a key of its own
# on loopback ports, a policy profile, a brand and a licence, builds the
# branded, signed agent (master) and customer (participant) apps through the
# portal, and starts a support session between them with a drawn password.
# Everything it starts is stopped, and the scratch directory removed, on exit.
set -euo pipefail

headless=0
seconds=0
for arg in "$@"; do
  case "$arg" in
    --headless) headless=1 ;;
    --seconds=*) seconds="${arg#--seconds=}" ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done
if [ "$headless" = 0 ] && [ -z "${DISPLAY:-}" ]; then
  echo "demo.sh: no display (DISPLAY is not set): running with --headless" >&2
  headless=1
fi

root="$(cd "$(dirname "$0")" && pwd)"
echo "== building (release; the first build takes several minutes)"
(cd "$root" && cargo build --release --quiet \
  -p conclave-relay -p conclave-portal -p conclave-master -p conclave-participant)
bin="${CARGO_TARGET_DIR:-$root/target}/release"

work="$(mktemp -d "${TMPDIR:-/tmp}/conclave-demo.XXXXXX")"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$work"

echo "== portal, relay, licence and branded apps in $work"
export CONCLAVE_PORTAL_DB="$work/portal.db"
export CONCLAVE_PORTAL_PASSPHRASE="demo passphrase $(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
portal_key="$("$bin/conclave-portal" init)"
"$bin/conclave-relay" keygen --out relay.key > relay.pub
base=$((20000 + RANDOM % 20000))
"$bin/conclave-relay" --key-file relay.key --portal-key "$portal_key" \
  --quic "127.0.0.1:$base" --tls "127.0.0.1:$((base + 1))" \
  --websocket off --admin off > relay.log 2>&1 &
pids+=($!)
"$bin/conclave-portal" relay add local --host 127.0.0.1 --key "$(cat relay.pub)" \
  --quic "$base" --tls "$((base + 1))" --websocket 0 > /dev/null
"$bin/conclave-portal" profile set support --set password_required=true \
  --set remote_control=true --set file_transfer=true > /dev/null
"$bin/conclave-portal" brand set demo --product "Conclave Demo" --organisation "Demo Ltd" > /dev/null
license="$("$bin/conclave-portal" license issue --licensee "Demo Ltd" --profile support)"
"$bin/conclave-portal" build master --profile support --brand demo --license "$license" --out agent > /dev/null
"$bin/conclave-portal" build participant --profile support --brand demo --out customer > /dev/null

password="demo-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')!"
mkfifo agent.in
ui=()
screen=x11
if [ "$headless" = 1 ]; then
  ui=(--headless)
  screen=synthetic:typing
fi

echo "== support session: agent and customer"
# The agent reads its commands from a pipe this script holds open.
./agent start --support --name Agent --password "$password" --json "${ui[@]}" \
  < agent.in > agent.jsonl 2> agent.log &
pids+=($!)
agent=$!
exec 3> agent.in
session=""
for _ in $(seq 100); do
  session="$(sed -n 's/.*"event":"session_opened","session":"\([0-9 ]*\)".*/\1/p' agent.jsonl | head -1)"
  [ -n "$session" ] && break
  kill -0 "$agent" 2>/dev/null || { cat agent.log agent.jsonl >&2; exit 1; }
  sleep 0.1
done
[ -n "$session" ] || { echo "demo.sh: the session did not open" >&2; cat agent.log >&2; exit 1; }
echo "   session $session, password $password"
# shellcheck disable=SC2086 # the ID's groups are separate arguments
./customer join $session --password "$password" --name Customer --screen "$screen" \
  --json "${ui[@]}" < /dev/null > customer.jsonl 2> customer.log &
pids+=($!)

if [ "$headless" = 0 ]; then
  echo "   the agent's window shows the customer's screen; \"Request control\" asks the"
  echo "   customer (banner: Allow / Deny); F11 or Stop on the customer's side ends it."
fi
echo "== live figures at the agent (Ctrl-C ends the session)"
start=$(date +%s)
shown=0
while kill -0 "$agent" 2>/dev/null; do
  line="$(grep '"event":"screen_stats"' agent.jsonl | tail -1 || true)"
  if [ -n "$line" ]; then
    field() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" <<< "$line"; }
    printf '\r   customer screen %sx%s: %3s fps  %8s B/s  latency %3s ms (max %3s ms)   ' \
      "$(field width)" "$(field height)" "$(field fps)" "$(field bytes_per_s)" \
      "$(field latency_ms)" "$(field latency_max_ms)"
    shown=1
  fi
  if [ "$seconds" != 0 ] && [ $(( $(date +%s) - start )) -ge "$seconds" ]; then
    break
  fi
  sleep 1
done
[ "$shown" = 1 ] && echo
if [ "$shown" = 0 ]; then
  echo "demo.sh: no screen arrived at the agent; logs:" >&2
  cat agent.log customer.log >&2
  exit 1
fi
echo "end" >&3
sleep 1
echo "== done"
