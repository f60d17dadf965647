# Sourced by .ci/run: a throwaway PostgreSQL server for tests/search/test_postgres.py.
# Installs PostgreSQL with apt-get when no server binaries are found, starts a cluster in a temp dir
# on 127.0.0.1 (free port, trust auth), creates a database, exports ARCHDSL_TEST_POSTGRES_URL, and
# stops the server and removes the directory when the CI shell exits. Never waits forever: the
# start is bounded by pg_ctl -t, and any failure stops CI with a message (set -e in .ci/run).

_archdsl_pg_bindir() {
  if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v pg_ctl)")"
    return 0
  fi
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

_archdsl_pg_start() {
  local bindir port dir as_pg=() sudo=()
  bindir="$(_archdsl_pg_bindir)"
  if [ -z "$bindir" ]; then
    [ "$(id -u)" -ne 0 ] && sudo=(sudo -n)
    echo "postgres.sh: installing PostgreSQL with apt-get" >&2
    "${sudo[@]}" apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq postgresql >/dev/null ||
      { echo "postgres.sh: apt-get install postgresql failed" >&2; return 1; }
    bindir="$(_archdsl_pg_bindir)"
    [ -n "$bindir" ] || { echo "postgres.sh: no PostgreSQL binaries after install" >&2; return 1; }
  fi
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  dir="$(mktemp -d "${TMPDIR:-/tmp}/archdsl-pg.XXXXXX")"
  if [ "$(id -u)" -eq 0 ]; then            # initdb refuses to run as root
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$dir"
    as_pg=(runuser -u postgres --)
  fi
  "${as_pg[@]}" "$bindir/initdb" -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; echo "postgres.sh: initdb failed" >&2; return 1; }
  "${as_pg[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=50" start >/dev/null ||
    { cat "$dir/server.log" >&2; echo "postgres.sh: the server did not start" >&2;
      "${as_pg[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1; return 1; }
  export _ARCHDSL_PG_DIR="$dir" _ARCHDSL_PG_CTL="${as_pg[*]} $bindir/pg_ctl"
  trap '$_ARCHDSL_PG_CTL -D "$_ARCHDSL_PG_DIR/data" -m immediate stop >/dev/null 2>&1; rm -rf "$_ARCHDSL_PG_DIR"' EXIT
  "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres archdsl_test ||
    { echo "postgres.sh: createdb failed" >&2; return 1; }
  export ARCHDSL_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$port/archdsl_test"
  echo "postgres.sh: PostgreSQL on 127.0.0.1:$port ($dir), ARCHDSL_TEST_POSTGRES_URL exported" >&2
}

_archdsl_pg_start
