#!/bin/sh
# Stands in for the official postgres image's entrypoint, with Debian's PostgreSQL (tests/dify/images.rs): on the
# first start, initdb with POSTGRES_USER and POSTGRES_PASSWORD (password logins over TCP) and create POSTGRES_DB;
# UTF8 databases, as the image's LANG=en_US.utf8 gives them (C.UTF-8 is glibc's equivalent of musl's en_US.utf8);
# then run postgres in the foreground with the container's args. The password only travels through a pipe.
set -eu
: "${PGDATA:?}" "${POSTGRES_USER:=postgres}" "${POSTGRES_PASSWORD:?}" "${POSTGRES_SOCKET_DIR:?}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA"
  chmod 0700 "$PGDATA"
  printf '%s\n' "$POSTGRES_PASSWORD" |
    initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile=/dev/stdin --auth-local=trust --auth-host=scram-sha-256 \
      --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -k $POSTGRES_SOCKET_DIR" -w start >/dev/null
  if [ -n "${POSTGRES_DB:-}" ] && [ "$POSTGRES_DB" != postgres ]; then
    psql -v ON_ERROR_STOP=1 -h "$POSTGRES_SOCKET_DIR" -U "$POSTGRES_USER" -d postgres -q -c "CREATE DATABASE \"$POSTGRES_DB\""
  fi
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "PostgreSQL init process complete; ready for start up."
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -k "$POSTGRES_SOCKET_DIR" "$@"
