#!/usr/bin/env bash
# Feathur side by side with Synapse on this machine.
#
#   spec-tests/bench/compare.sh            # scaled-down run, under 20 minutes
#   spec-tests/bench/compare.sh --full     # the issue's full scale (much longer)
#
# Builds Feathur and the load generator (release), installs Synapse from PyPI
# into a virtual environment under the cargo target directory (reused when
# present), then for every system under test and every workload starts a
# fresh server on a loopback port with a fresh data directory, runs
# `feathur-load` against it through the Client-Server API, and stops it.
# Systems: Feathur; Synapse on SQLite; Synapse on PostgreSQL 15 when its
# binaries are installed (Debian's postgresql-15) — skipped otherwise.
# The side-by-side table replaces the marked section of docs/performance.md.
#
# Options:
#   --full              the issue's scale: W2 100 rooms × 100 members (50 of
#                       them timed), W6 100,000 events, W1 30 s per sender
#                       count, W3 50 rounds (default: 20 rooms × 50 members,
#                       5,000 events, 10 s, 20 rounds)
#   --runs N            repeat every measurement N times (default 1)
#   --no-postgres       skip Synapse on PostgreSQL
#   --only SYSTEMS      comma-separated subset of feathur,synapse,synapse-pg
#   --workloads LIST    comma-separated subset of w1,w2,w3,w3idle,w6 (default all)
#   --doc FILE          where the table goes (default docs/performance.md);
#                       --doc - prints it instead
#   --keep              keep the work directory (logs, configs, JSON results)
#   --no-build          use the release binaries already built
#   --feathur-bin FILE  measure this feathur binary instead of the release
#                       build (the table then says which binary it was)
#   --serve SYSTEM      only start one server (feathur, synapse or synapse-pg)
#                       configured as for the benchmark, print its URL and pid,
#                       and keep it until Ctrl-C: for profiling by hand
# Environment: CARGO_TARGET_DIR (default ./target), FEATHUR_BENCH_VENV
# (default $CARGO_TARGET_DIR/bench/synapse-venv), PYTHON (default python3).
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

full=0
runs=1
postgres=1
only="feathur,synapse,synapse-pg"
workloads="w1,w2,w3,w3idle,w6"
doc="docs/performance.md"
keep=0
build=1
serve=""
feathur_override=""
while [ $# -gt 0 ]; do
  case "$1" in
    --full) full=1 ;;
    --runs) runs="$2"; shift ;;
    --no-postgres) postgres=0 ;;
    --only) only="$2"; shift ;;
    --workloads) workloads="$2"; shift ;;
    --doc) doc="$2"; shift ;;
    --keep) keep=1 ;;
    --no-build) build=0 ;;
    --feathur-bin) feathur_override="$2"; shift ;;
    --serve) serve="$2"; only="$2"; shift ;;
    -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

has() { case ",$1," in *",$2,"*) return 0 ;; *) return 1 ;; esac; }

# Scale. The scaled-down defaults keep the whole run near 15 minutes on a
# 2-core machine; --full is the issue's scale.
if [ "$full" = 1 ]; then
  w1_args=(--senders 1,10,50 --send-secs 30 --messages 10000000)
  w2_args=(--users 50 --rooms 100 --room-members 100 --samples 5)
  w3_args=(--members 200 --rounds 50)
  w3idle_args=(--polls 1000 --poll-users 100 --window-secs 20)
  w6_args=(--events 100000)
else
  w1_args=(--senders 1,10,50 --send-secs 10 --messages 10000000)
  w2_args=(--users 20 --rooms 20 --room-members 50 --samples 3)
  w3_args=(--members 200 --rounds 20)
  w3idle_args=(--polls 1000 --poll-users 100 --window-secs 10)
  w6_args=(--events 5000)
fi

target="${CARGO_TARGET_DIR:-$root/target}"
python="${PYTHON:-python3}"
venv="${FEATHUR_BENCH_VENV:-$target/bench/synapse-venv}"

if [ "$build" = 1 ]; then
  echo "== building Feathur and feathur-load (release)"
  cargo build --release -p feathur --bin feathur -p spec-tests --bin feathur-load
fi
feathur_bin="$target/release/feathur"
feathur_build="release build"
if [ -n "$feathur_override" ]; then
  feathur_bin="$(cd "$(dirname "$feathur_override")" && pwd)/$(basename "$feathur_override")"
  feathur_build="binary given with --feathur-bin, $("$feathur_bin" --version 2>/dev/null || echo 'version unknown')"
fi
load_bin="$target/release/feathur-load"

if has "$only" synapse || has "$only" synapse-pg; then
  if ! "$venv/bin/python" -c "import synapse" >/dev/null 2>&1; then
    echo "== installing Synapse into $venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q matrix-synapse psycopg2-binary
  elif has "$only" synapse-pg && ! "$venv/bin/python" -c "import psycopg2" >/dev/null 2>&1; then
    "$venv/bin/pip" install -q psycopg2-binary
  fi
fi

pg_bin=""
if [ "$postgres" = 1 ] && has "$only" synapse-pg; then
  for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then pg_bin="$d"; break; fi
  done
  [ -n "$pg_bin" ] || echo "== PostgreSQL binaries not found: skipping Synapse on PostgreSQL"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/feathur-bench.XXXXXX")"
pids=()
# A thousand long-polls are a thousand sockets, in the servers too.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
pg_data=""
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ -n "$pg_data" ]; then as_pg "$pg_bin/pg_ctl" -D "$pg_data" -m immediate stop >/dev/null 2>&1 || true; fi
  if [ "$keep" = 1 ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap "exit 130" INT TERM

free_port() {
  "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_ready() { # URL PID LOG
  for _ in $(seq 1 300); do
    if curl -fsS "$1/_matrix/client/versions" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$2" 2>/dev/null; then echo "server exited; log:" >&2; tail -40 "$3" >&2; return 1; fi
    sleep 0.2
  done
  echo "server did not answer in 60 s; log:" >&2; tail -40 "$3" >&2; return 1
}

# PostgreSQL refuses to run as root; run its tools as the postgres user then.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_port=""
start_postgres() {
  [ -n "$pg_data" ] && return 0
  pg_data="$work/pg"
  mkdir -p "$pg_data"
  if [ "$(id -u)" = 0 ]; then chmod 755 "$work"; chown postgres: "$pg_data"; fi
  as_pg "$pg_bin/initdb" -D "$pg_data" -U postgres --auth=trust -E UTF8 --locale=C >"$work/pg-initdb.log"
  pg_port="$(free_port)"
  as_pg "$pg_bin/pg_ctl" -D "$pg_data" -l "$pg_data/server.log" -w \
    -o "-p $pg_port -k $pg_data -c listen_addresses=127.0.0.1" start >/dev/null
}

# Each start gets a fresh data directory; sets server_url, server_pid, server_data.
start_server() { # SYSTEM NAME
  local system="$1" dir="$work/$2" port
  mkdir -p "$dir"
  port="$(free_port)"
  server_url="http://127.0.0.1:$port"
  case "$system" in
    feathur)
      server_data="$dir/data"
      cat >"$dir/feathur.toml" <<EOF
server_name = "localhost:$port"
data_dir = "$server_data"
[client]
listen = "127.0.0.1:$port"
[registration]
open = true
[federation]
enabled = false
# Off in Synapse's config too: both measured without presence.
[presence]
enabled = false
[log]
level = "warn"
EOF
      "$feathur_bin" serve --config "$dir/feathur.toml" >"$dir/server.log" 2>&1 &
      server_pid=$!
      ;;
    synapse|synapse-pg)
      server_data="$dir/db"
      mkdir -p "$server_data"
      "$venv/bin/python" -m synapse.app.homeserver --server-name "localhost:$port" \
        --config-path "$dir/generated.yaml" --data-directory "$dir" \
        --generate-config --report-stats=no >/dev/null
      local secrets
      secrets="$(grep -E '^(registration_shared_secret|macaroon_secret_key|form_secret):' "$dir/generated.yaml")"
      local database
      if [ "$system" = synapse ]; then
        database="database: {name: sqlite3, args: {database: $server_data/homeserver.db}}"
      else
        start_postgres
        local db="synapse_$(echo "$2" | tr -c 'a-z0-9\n' '_')"
        as_pg "$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres \
          --encoding=UTF8 --locale=C --template=template0 "$db"
        database="database: {name: psycopg2, args: {user: postgres, host: 127.0.0.1, port: $pg_port, database: $db, cp_min: 5, cp_max: 10}}"
        server_data=""
      fi
      cat >"$dir/homeserver.yaml" <<EOF
server_name: "localhost:$port"
pid_file: $dir/homeserver.pid
listeners:
  - {port: $port, bind_addresses: ['127.0.0.1'], type: http, tls: false, x_forwarded: false,
     resources: [{names: [client], compress: false}]}
$database
log_config: $dir/log.yaml
media_store_path: $dir/media_store
signing_key_path: $dir/localhost.signing.key
$secrets
report_stats: false
trusted_key_servers: []
suppress_key_server_warning: true
enable_registration: true
enable_registration_without_verification: true
# Registration is setup, not a measured workload: cheap password hashes.
bcrypt_rounds: 4
presence: {enabled: false}
rc_message: {per_second: 100000, burst_count: 100000}
rc_registration: {per_second: 100000, burst_count: 100000}
rc_registration_token_validity: {per_second: 100000, burst_count: 100000}
rc_login:
  address: {per_second: 100000, burst_count: 100000}
  account: {per_second: 100000, burst_count: 100000}
  failed_attempts: {per_second: 100000, burst_count: 100000}
rc_joins:
  local: {per_second: 100000, burst_count: 100000}
  remote: {per_second: 100000, burst_count: 100000}
rc_joins_per_room: {per_second: 100000, burst_count: 100000}
rc_invites:
  per_room: {per_second: 100000, burst_count: 100000}
  per_user: {per_second: 100000, burst_count: 100000}
  per_issuer: {per_second: 100000, burst_count: 100000}
rc_room_creation: {per_second: 100000, burst_count: 100000}
rc_3pid_validation: {per_second: 100000, burst_count: 100000}
rc_admin_redaction: {per_second: 100000, burst_count: 100000}
rc_presence:
  per_user: {per_second: 100000, burst_count: 100000}
rc_delayed_event_mgmt: {per_second: 100000, burst_count: 100000}
rc_reports: {per_second: 100000, burst_count: 100000}
EOF
      cat >"$dir/log.yaml" <<EOF
version: 1
formatters: {precise: {format: '%(asctime)s - %(name)s - %(levelname)s - %(message)s'}}
handlers: {file: {class: logging.FileHandler, formatter: precise, filename: $dir/homeserver.log}}
root: {level: WARNING, handlers: [file]}
disable_existing_loggers: false
EOF
      "$venv/bin/python" -m synapse.app.homeserver -c "$dir/homeserver.yaml" >"$dir/server.log" 2>&1 &
      server_pid=$!
      ;;
  esac
  pids+=("$server_pid")
  wait_ready "$server_url" "$server_pid" "$dir/server.log"
}

stop_server() {
  kill -TERM "$server_pid" 2>/dev/null || true
  for _ in $(seq 1 150); do kill -0 "$server_pid" 2>/dev/null || return 0; sleep 0.2; done
  kill -9 "$server_pid" 2>/dev/null || true
}

if [ -n "$serve" ]; then
  start_server "$serve" "serve"
  echo "$serve serving at $server_url (pid $server_pid, work dir $work); Ctrl-C stops it"
  wait "$server_pid"
  exit 0
fi

systems=()
if has "$only" feathur; then systems+=(feathur); fi
if has "$only" synapse; then systems+=(synapse); fi
if has "$only" synapse-pg && [ -n "$pg_bin" ]; then systems+=(synapse-pg); fi

run_workload() { # SYSTEM RUN WORKLOAD ARGS...
  local system="$1" run="$2" workload="$3"
  shift 3
  echo "== $system, run $run: $workload"
  start_server "$system" "$system-r$run-$workload"
  local data_args=()
  if [ -n "$server_data" ]; then data_args=(--data-dir "$server_data"); fi
  "$load_bin" --url "$server_url" --pid "$server_pid" "${data_args[@]}" \
    --label "$system" --json "$work/$system.run$run.json" --scenario "$workload" "$@"
  stop_server
}

started=$(date +%s)
for run in $(seq 1 "$runs"); do
  for system in "${systems[@]}"; do
    if has "$workloads" w6; then run_workload "$system" "$run" footprint "${w6_args[@]}"; fi
    if has "$workloads" w1; then run_workload "$system" "$run" send "${w1_args[@]}"; fi
    if has "$workloads" w3; then run_workload "$system" "$run" fanout "${w3_args[@]}"; fi
    if has "$workloads" w3idle; then run_workload "$system" "$run" idle "${w3idle_args[@]}"; fi
    if has "$workloads" w2; then run_workload "$system" "$run" initial "${w2_args[@]}"; fi
  done
done
elapsed=$(( $(date +%s) - started ))

synapse_version="$("$venv/bin/python" -c 'import synapse; print(synapse.__version__)' 2>/dev/null || echo '?')"
pg_version=""
if [ -n "$pg_bin" ]; then pg_version="$("$pg_bin/postgres" --version | sed -E 's/^[^)]*\) ([^ ]+).*/\1/')"; fi
cpu="$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
mem="$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
scale="scaled-down default"
if [ "$full" = 1 ]; then scale="full scale (--full)"; fi
command="spec-tests/bench/compare.sh"
if [ "$full" = 1 ]; then command="$command --full"; fi
if [ "$runs" != 1 ]; then command="$command --runs $runs"; fi
if [ -n "$feathur_override" ]; then command="$command --feathur-bin FILE"; fi
if [ "$postgres" = 0 ]; then command="$command --no-postgres"; fi

results=()
for system in "${systems[@]}"; do
  for run in $(seq 1 "$runs"); do results+=(--result "$system=$work/$system.run$run.json"); done
done
"$load_bin" report "${results[@]}" \
  --fact "Command: \`$command\` ($scale, $runs runs, ${elapsed} s of measuring)" \
  --fact "Machine: $(nproc) cores ($cpu), $mem; Linux $(uname -r); load generator and servers on the same cores" \
  --fact "Load average when the run ended: $(cut -d' ' -f1-3 /proc/loadavg)" \
  --fact "Feathur $(git describe --always --dirty 2>/dev/null || echo '?') ($feathur_build); Synapse $synapse_version on Python $("$venv/bin/python" -c 'import platform; print(platform.python_version())' 2>/dev/null || echo '?')${pg_version:+; PostgreSQL $pg_version}" \
  --doc "$doc"
