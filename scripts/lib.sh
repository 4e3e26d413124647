# Shared settings for scripts/setup and scripts/test. Sourced, not run.
CACHE=${DELIVERY_OTP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/delivery-otp}
KOTLIN_VERSION=2.4.20
KOTLIN_HOME="$CACHE/kotlinc-$KOTLIN_VERSION"
PYOTP_VERSION=2.9.0
PYVENV="$CACHE/pyotp-venv"
SCHEMATHESIS_VERSION=4.32.5
STVENV="$CACHE/schemathesis-venv"
SWIFT_ROOT="$CACHE/trixie-swift"
JAVA_SHARE=/usr/share/java
CARGO_FUZZ_VERSION=0.13.1
CARGO_FUZZ_HOME="$CACHE/cargo-fuzz"

# Runs a command inside the trixie root with proc, sys and dev mounted. Paths under /work and $CACHE are bind
# mounted at the same place so that the command sees the checkout.
in_swift_root() {
  # Each call gets a mount namespace of its own: its /proc, /sys, /dev and
  # bind mounts are seen by it alone and vanish when it exits, so two runs at
  # once (or a run killed half-way) never see or unmount each other's.
  local root=$SWIFT_ROOT
  cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
  unshare --mount --propagation private bash -euo pipefail -c '
    root=$1; shift
    binds=()
    while [ "$1" != -- ]; do binds+=("$1"); shift; done
    shift
    mount -t proc proc "$root/proc"
    mount -t sysfs sysfs "$root/sys" 2>/dev/null || mount --rbind /sys "$root/sys"
    mount --rbind /dev "$root/dev"
    for d in "${binds[@]}"; do
      [ -n "$d" ] || continue
      mkdir -p "$root$d"
      mount --bind "$d" "$root$d"
    done
    exec chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      HOME=/root LANG=C.UTF-8 "$@"
  ' in_swift_root "$root" "${SWIFT_BIND_DIRS[@]:-}" -- "$@"
}

# The Debian archive this machine's apt uses (its own mirror or proxy), for
# debootstrap: the first non-security URI in /etc/apt/sources.list.d/*.sources
# (deb822) or /etc/apt/sources.list; deb.debian.org only when there is none.
debian_mirror() {
  local uri
  uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '
      /^[[:space:]]*$/ { if (uris != "" && suites !~ /security/ && types ~ /(^| )deb( |$)/) { print uris; exit } uris=""; suites=""; types=""; next }
      /^URIs:/ { sub(/^URIs:[[:space:]]*/, ""); split($0, u, " "); uris=u[1] }
      /^Suites:/ { suites=$0 }
      /^Types:/ { types=$0 }
      END { if (uris != "" && suites !~ /security/ && types ~ /(^| )deb( |$)/) print uris }' | head -1)
  if [ -z "$uri" ]; then
    uri=$(grep -hE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list 2>/dev/null \
      | grep -v security | sed -E 's/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/' | head -1)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

# A private Redis server on a free loopback port, for the RedisStore tests and
# benches: started by redis_start (which exports DELIVERY_OTP_TEST_REDIS_URL),
# stopped by redis_stop. It persists every write (append-only file, fsync
# always) in its temporary folder, as RedisStore insists.
redis_start() {
  REDIS_DIR=$(mktemp -d)
  local port tries=0
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly yes --appendfsync always \
    --daemonize yes --pidfile "$REDIS_DIR/redis.pid" --dir "$REDIS_DIR" \
    --logfile "$REDIS_DIR/redis.log" || return 1
  until redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ $tries -gt 50 ]; then cat "$REDIS_DIR/redis.log"; return 1; fi
    sleep 0.1
  done
  export DELIVERY_OTP_TEST_REDIS_URL="redis://127.0.0.1:$port/"
  echo "redis-server $(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p') on 127.0.0.1:$port"
}
redis_stop() {
  if [ -n "${REDIS_DIR:-}" ] && [ -f "$REDIS_DIR/redis.pid" ]; then
    kill "$(cat "$REDIS_DIR/redis.pid")" 2>/dev/null || true
    sleep 0.2
  fi
  [ -n "${REDIS_DIR:-}" ] && rm -rf "$REDIS_DIR"
  REDIS_DIR=
}

# A private PostgreSQL server on a free loopback port, for the service's
# tests: started by postgres_start (which exports
# DELIVERY_OTP_TEST_POSTGRES_URL), stopped by postgres_stop. PostgreSQL will
# not run as root, so its folder belongs to the postgres user.
# PG_SETTINGS adds server settings ("-c name=value ..."), as the benchmark
# does to size the buffer cache.
postgres_start() {
  PG_DIR=$(mktemp -d)
  chown postgres "$PG_DIR"
  local port bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$bin" ] || { echo "no PostgreSQL under /usr/lib/postgresql"; return 1; }
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  runuser -u postgres -- "$bin/initdb" -D "$PG_DIR/data" -A trust -U app >/dev/null || return 1
  runuser -u postgres -- "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" \
    -o "-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=200 ${PG_SETTINGS:-}" -w start >/dev/null || { cat "$PG_DIR/log"; return 1; }
  PG_BIN=$bin
  export DELIVERY_OTP_TEST_POSTGRES_URL="postgresql://app@127.0.0.1:$port/postgres"
  echo "postgres $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"
}
postgres_stop() {
  if [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast stop >/dev/null 2>&1 || true
  fi
  [ -n "${PG_DIR:-}" ] && rm -rf "$PG_DIR"
  return 0
}

# The service (delivery-otp-server) on a free loopback port with a fresh
# SQLite data directory, for the app suites' HTTP tests: service_start
# exports SERVICE_URL and SERVICE_TOKEN (the admin token); service_stop ends it.
service_start() {
  SERVICE_DIR=$(mktemp -d)
  cargo build --quiet -p delivery-otp-service --bin delivery-otp-server || return 1
  : >"$SERVICE_DIR/out"
  "$repo/target/debug/delivery-otp-server" --data-dir "$SERVICE_DIR/data" --listen 127.0.0.1:0 \
    >"$SERVICE_DIR/out" 2>"$SERVICE_DIR/log" &
  SERVICE_PID=$!
  local tries=0
  until [ "$(wc -l <"$SERVICE_DIR/out")" -ge 2 ]; do
    tries=$((tries + 1))
    if [ $tries -gt 100 ] || ! kill -0 "$SERVICE_PID" 2>/dev/null; then cat "$SERVICE_DIR/log"; return 1; fi
    sleep 0.1
  done
  SERVICE_URL=$(sed -n 's/.*listening on //p' "$SERVICE_DIR/out")
  SERVICE_TOKEN=$(cat "$SERVICE_DIR/data/admin-token")
  export SERVICE_URL SERVICE_TOKEN
  echo "delivery-otp-server on $SERVICE_URL"
}
service_stop() {
  [ -n "${SERVICE_PID:-}" ] && kill "$SERVICE_PID" 2>/dev/null && wait "$SERVICE_PID" 2>/dev/null
  [ -n "${SERVICE_DIR:-}" ] && rm -rf "$SERVICE_DIR"
  return 0
}

# Compiles the Kotlin bindings (the generated delivery_otp.kt and the
# hand-written files beside it) once per content, and sets BINDINGS_JAR.
kotlin_bindings_jar() {
  local srcs=(bindings/kotlin/src/main/kotlin/dev/deliveryotp/*.kt) hash
  hash=$( (echo "$KOTLIN_VERSION"; cat "${srcs[@]}") | sha256sum | cut -c1-16)
  BINDINGS_JAR="$CACHE/kotlin/bindings-$hash.jar"
  mkdir -p "$CACHE/kotlin"
  if [ ! -f "$BINDINGS_JAR" ]; then
    echo "kotlinc: bindings (${srcs[*]})" >&2
    "$KOTLIN_HOME/bin/kotlinc" -nowarn -cp "$JAVA_SHARE/jna.jar:$KOTLIN_HOME/lib/kotlinx-coroutines-core-jvm.jar" \
      "${srcs[@]}" -d "$BINDINGS_JAR.tmp.jar" >&2 || return 1
    mv "$BINDINGS_JAR.tmp.jar" "$BINDINGS_JAR"
  fi
}

# For the service benchmarks (scripts/bench-service, scripts/bench-service-harness).
# PostgreSQL's settings there: a buffer cache that holds the tables a run
# makes (about 400 MB by the uploads; at PostgreSQL's default of 128 MB an
# upload read 1.3 pages from the kernel, at 1 GB 0.14).
BENCH_PG_DEFAULT_SETTINGS="-c shared_buffers=1GB"

# The fixture file (made by service/examples/bench_fixtures in DIR) that wrk
# sends for OPERATION; "-" for issueCode, whose requests wrk-lines.lua makes.
bench_fixture_file() { # operation dir
  case $1 in
    issueCode) echo - ;;
    verifyCode) echo "$2/verify.txt" ;;
    verifyCode-signed) echo "$2/verify-signed.txt" ;;
    uploadReceipts) echo "$2/upload.txt" ;;
    uploadReceipts-x100) echo "$2/upload-batch.txt" ;;
    *) echo "unknown operation $1" >&2; return 1 ;;
  esac
}

# Settles the PostgreSQL database at URL before a measured operation, as
# pgbench does before its own runs: the dead rows earlier operations left
# vacuumed and a checkpoint taken, so that no operation pays for another's
# cleanup or checkpoint. It pays for its own: every page it first changes
# after that checkpoint writes a full-page image to the log, as on a server
# between its checkpoints.
postgres_settle() { # url
  psql -q "$1" -c "VACUUM ANALYZE" -c "CHECKPOINT"
}

# CPU ticks of PostgreSQL's processes, with what those that ended
# (autovacuum workers, closed backends) left in the time their parent, the
# postmaster, has reaped.
postgres_cpu_ticks() {
  local pid
  for pid in $(pgrep -u postgres 2>/dev/null); do
    awk '{print $14 + $15 + $16 + $17}' "/proc/$pid/stat" 2>/dev/null
  done | awk '{t += $1} END {print t + 0}'
}
