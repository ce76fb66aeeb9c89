#!/usr/bin/env bash
# Makes sure the servers the tests use answer on loopback: MariaDB (3306),
# Redis (6379) and RabbitMQ (5672). Starts whichever does not; leaves alone
# what already runs. `scripts/setup.sh` installs them.
set -euo pipefail

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {
  local name=$1 port=$2
  for _ in $(seq 1 60); do
    if answers "$port"; then return 0; fi
    sleep 1
  done
  echo "services: $name did not come up on 127.0.0.1:$port" >&2
  return 1
}

if ! answers 3306; then
  echo "services: starting MariaDB"
  fresh=no
  if [ ! -d /var/lib/mysql/mysql ]; then
    mariadb-install-db --user=mysql >/dev/null
    fresh=yes
  fi
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
  wait_for MariaDB 3306
  # The tests sign in as root without a password over TCP, as on CI; a
  # fresh install allows root only through its Unix socket.
  if [ "$fresh" = yes ]; then
    mariadb -uroot -e "ALTER USER root@localhost IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket"
  fi
fi

if ! answers 6379; then
  echo "services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis 6379
fi

if ! answers 5672; then
  echo "services: starting RabbitMQ"
  rabbitmq-server -detached
  wait_for RabbitMQ 5672
fi
