#!/usr/bin/env bash
# MariaDB for the local stack, the tests and CI (the stand-in for Aurora MySQL):
#   installs Debian's mariadb-server (10.11 on Debian 12) when it is missing, starts it on
#   127.0.0.1:${FANOUT_DB_PORT:-3306} when it is down, and lets root log in over TCP with an
#   empty password (what the tests and the demo use). Idempotent; safe to run on every `make up`.
# Not root and no MariaDB? Install it yourself (`sudo apt-get install mariadb-server`, or any
# MariaDB 10.11 / MySQL 8 you can reach) and point FANOUT_DB_HOST/PORT/USER/PASSWORD at it.
set -euo pipefail

host=${FANOUT_DB_HOST:-127.0.0.1}
port=${FANOUT_DB_PORT:-3306}
say() { echo "[mariadb] $*"; }
listening() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }
root_over_tcp() { mariadb --protocol=tcp -h "$host" -P "$port" -uroot --password= -e 'SELECT 1' >/dev/null 2>&1; }

if [ "$host" != 127.0.0.1 ] && [ "$host" != localhost ]; then
    listening || { say "$host:$port is not reachable (a remote database is not started from here)" >&2; exit 1; }
    exit 0
fi

mariadbd=$(command -v mariadbd || echo /usr/sbin/mariadbd)
if [ ! -x "$mariadbd" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        say "MariaDB is not installed and installing it needs root: run 'sudo apt-get install mariadb-server'," >&2
        say "or set FANOUT_DB_HOST/FANOUT_DB_PORT/FANOUT_DB_USER/FANOUT_DB_PASSWORD to a MariaDB 10.11 you have" >&2
        exit 1
    fi
    say "installing mariadb-server from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends mariadb-server mariadb-client >/dev/null
    mariadbd=$(command -v mariadbd || echo /usr/sbin/mariadbd)
fi

if ! listening; then
    if [ "$(id -u)" -ne 0 ]; then
        say "MariaDB is installed but not running on $host:$port; start it (sudo service mariadb start)" >&2
        exit 1
    fi
    say "starting $("$mariadbd" --version | awk '{print $3}') on $host:$port"
    install -d -o mysql -g mysql /run/mysqld
    start-stop-daemon --start --oknodo --background --exec "$mariadbd" -- \
        --user=mysql --bind-address="$host" --port="$port"
    for _ in $(seq 1 60); do listening && break; sleep 1; done
    listening || { say "MariaDB did not come up within 60 s (see journal or /var/log/mysql)" >&2; exit 1; }
fi

if ! root_over_tcp; then
    if [ "$(id -u)" -ne 0 ]; then
        say "root cannot log in over TCP with an empty password; set FANOUT_DB_USER/FANOUT_DB_PASSWORD" >&2
        exit 1
    fi
    say "letting root log in over TCP with an empty password (socket login kept)"
    mariadb -uroot -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('');
                       FLUSH PRIVILEGES;"
    root_over_tcp || { say "root still cannot log in over TCP" >&2; exit 1; }
fi
