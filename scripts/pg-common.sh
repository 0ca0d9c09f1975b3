# Shell functions the cluster scripts share (sourced, not run).

find_bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  return 1
}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# A free local port, picked at random so clusters started at the same time
# (tests start their own) rarely pick the same one; start() retries if so.
free_port() {
  local port tries
  for tries in $(seq 1 200); do
    port=$((54320 + RANDOM % 2000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return 0; fi
  done
  echo "no free port in 54320-56319" >&2; return 1
}

apt_install() {
  echo "installing Debian packages: $*" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "$@" >&2
}

