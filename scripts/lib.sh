# Shared settings for scripts/setup and scripts/test. Sourced, not run.
CACHE=${DELIVERY_OTP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/delivery-otp}
KOTLIN_VERSION=2.4.20
KOTLIN_HOME="$CACHE/kotlinc-$KOTLIN_VERSION"
PYOTP_VERSION=2.9.0
PYVENV="$CACHE/pyotp-venv"
SWIFT_ROOT="$CACHE/trixie-swift"
JAVA_SHARE=/usr/share/java

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
