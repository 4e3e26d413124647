# Shared settings for scripts/setup and scripts/test. Sourced, not run.
CACHE=${DELIVERY_OTP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/delivery-otp}
KOTLIN_VERSION=2.4.20
KOTLIN_HOME="$CACHE/kotlinc-$KOTLIN_VERSION"
PYOTP_VERSION=2.9.0
PYVENV="$CACHE/pyotp-venv"
SWIFT_ROOT="$CACHE/trixie-swift"
JAVA_SHARE=/usr/share/java
CARGO_FUZZ_VERSION=0.13.1
CARGO_FUZZ_HOME="$CACHE/cargo-fuzz"

# Runs a command inside the trixie root with proc, sys and dev mounted, and
# unmounts them again whatever happens. Paths under /work and $CACHE are bind
# mounted at the same place so that the command sees the checkout.
in_swift_root() {
  local root=$SWIFT_ROOT mounted=() rc=0 d
  _mnt() { mkdir -p "$root$2"; mount "${@:3}" "$1" "$root$2" && mounted=("$root$2" "${mounted[@]}"); }
  cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
  _mnt proc /proc -t proc
  _mnt sysfs /sys -t sysfs
  _mnt /dev /dev --bind
  _mnt devpts /dev/pts -t devpts
  for d in "${SWIFT_BIND_DIRS[@]:-}"; do
    [ -n "$d" ] && _mnt "$d" "$d" --bind
  done
  chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@" || rc=$?
  for d in "${mounted[@]}"; do umount -l "$d" 2>/dev/null || true; done
  return $rc
}

# A private Redis server on a free loopback port, for the RedisStore tests and
# benches: started by redis_start (which exports DELIVERY_OTP_REDIS_URL),
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
  export DELIVERY_OTP_REDIS_URL="redis://127.0.0.1:$port/"
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
