#!/usr/bin/env bash
# ensure-tools.sh makes sure the tools `make test` uses are here, and says
# what it did. `make test` runs it first; running it again changes nothing.
#
#   Chromium      the chat example's browser test (e2e/)      apt package chromium
#   Node and npm  the README's JavaScript client test          apt packages nodejs, npm
#   redis-server  the multi-node and Redis tests               apt package redis-server
#   npm ws        the README client's WebSocket in Node        npm ci in testdata/readme-client
#
# and a Redis server answering at $REDIS_ADDR (default 127.0.0.1:6379):
# if nothing answers there and the address is on this machine, it starts
# one (no persistence) and leaves it running.
#
# It installs with apt-get when it runs as root on a machine that has it
# (Debian, Ubuntu). Otherwise, or with WS_INSTALL_TOOLS=0, it installs
# nothing and prints what is missing and the command that installs it; it
# still exits 0, and the tests that need a missing tool then skip (plain
# `go test`) or fail saying what is missing (`make test`).
set -uo pipefail

REDIS_ADDR=${REDIS_ADDR:-127.0.0.1:6379}
redis_host=${REDIS_ADDR%:*}
redis_port=${REDIS_ADDR##*:}

say() { echo "ensure-tools: $*"; }
have() { command -v "$1" >/dev/null 2>&1; }

can_install=1
why_not=""
if [ "${WS_INSTALL_TOOLS:-1}" = 0 ]; then
	can_install=0 why_not="WS_INSTALL_TOOLS=0"
elif [ "$(id -u)" != 0 ]; then
	can_install=0 why_not="not running as root"
elif ! have apt-get; then
	can_install=0 why_not="no apt-get on this machine"
fi

# The packages to install, gathered first so apt-get runs once.
missing=()
have_chromium() {
	[ -n "${WS_CHROMIUM:-}" ] && return 0
	have chromium || have chromium-browser || have google-chrome
}
have_chromium || missing+=(chromium)
have node || missing+=(nodejs)
have npm || missing+=(npm)
if [[ $redis_host == 127.* || $redis_host == localhost ]] && ! have redis-server; then
	missing+=(redis-server)
fi

if [ ${#missing[@]} -eq 0 ]; then
	say "chromium, node, npm and redis-server are installed"
elif [ $can_install = 1 ]; then
	say "installing with apt-get: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
		say "installed: ${missing[*]}"
	else
		say "apt-get could not install ${missing[*]}; the tests that need them will say so"
	fi
else
	say "missing: ${missing[*]} ($why_not, so nothing is installed)"
	say "install them with: sudo apt-get install -y ${missing[*]}"
	say "(without apt-get: install Node.js 18+, redis-server and Chromium or Chrome your platform's way; WS_CHROMIUM=/path names the browser)"
fi

# The README client test's npm dependency (the "ws" package), from the
# lock file; the test does the same when it runs without make.
client_dir="$(cd "$(dirname "$0")/.." && pwd)/testdata/readme-client"
if [ -d "$client_dir/node_modules/ws" ]; then
	say "npm package ws is installed in testdata/readme-client"
elif have npm; then
	say "installing npm package ws in testdata/readme-client (npm ci)"
	npm ci --no-audit --no-fund --prefix "$client_dir" >/dev/null || say "npm ci failed; the README client test will say so"
else
	say "without npm the npm package ws cannot be installed in testdata/readme-client; the README client test will say so"
fi

# redis_answers reports whether a Redis server answers PING at the address.
redis_answers() {
	if have redis-cli; then
		[ "$(redis-cli -h "$redis_host" -p "$redis_port" ping 2>/dev/null)" = PONG ]
		return
	fi
	local reply
	reply=$({ exec 3<>"/dev/tcp/$redis_host/$redis_port" && printf 'PING\r\n' >&3 &&
		read -r -t 2 line <&3 && printf '%s' "$line"; } 2>/dev/null) || return 1
	[[ $reply == +PONG* ]]
}

if redis_answers; then
	say "Redis answers at $REDIS_ADDR"
elif [[ $redis_host != 127.* && $redis_host != localhost ]]; then
	say "no Redis answers at $REDIS_ADDR, which is not on this machine; the Redis tests will say so"
elif ! have redis-server; then
	say "no Redis answers at $REDIS_ADDR and redis-server is not installed; the Redis tests will say so"
else
	say "starting redis-server on $REDIS_ADDR (no persistence; stop it with: redis-cli -h $redis_host -p $redis_port shutdown nosave)"
	redis-server --daemonize yes --bind "$redis_host" --port "$redis_port" --save "" --appendonly no >/dev/null
	for _ in $(seq 1 50); do
		redis_answers && break
		sleep 0.1
	done
	if redis_answers; then
		say "Redis answers at $REDIS_ADDR"
	else
		say "redis-server did not answer at $REDIS_ADDR within 5s; the Redis tests will say so"
	fi
fi
exit 0
