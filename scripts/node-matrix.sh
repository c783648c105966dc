#!/usr/bin/env bash
# node-matrix.sh fetches the Node.js releases the JavaScript client
# (clients/js) is tested on besides the machine's own node, and prints
# their node binaries on stdout, separated by ":", for WS_NODES:
#
#   18.20.8   the oldest Node the client supports (no global WebSocket)
#   22.23.5   Node 22's own WebSocket, which fires no close event after a
#             refused connection (the client must not wait for one)
#   24.22.3   the current Node, its own WebSocket
#
# The releases come from the npm registry (packages node-<os>-<arch>,
# the same binaries nodejs.org ships) into $WS_TOOLS_CACHE (default
# ~/.cache/go-ws); running it again downloads nothing. What it cannot
# fetch (no npm, no network, no package for this platform) it says on
# stderr and leaves out; it always exits 0.
set -uo pipefail

versions=(18.20.8 22.23.5 24.22.3)
cache=${WS_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/go-ws}/node

say() { echo "node-matrix: $*" >&2; }

case "$(uname -s)" in
Linux) os=linux ;;
Darwin) os=darwin ;;
*) say "no Node packages for $(uname -s) on the npm registry; the client is tested on this machine's node only"; exit 0 ;;
esac
case "$(uname -m)" in
x86_64 | amd64) arch=x64 ;;
aarch64 | arm64) arch=arm64 ;;
*) say "no Node packages for $(uname -m) on the npm registry; the client is tested on this machine's node only"; exit 0 ;;
esac

paths=()
for v in "${versions[@]}"; do
	dir="$cache/$v"
	bin="$dir/package/bin/node"
	if [ ! -x "$bin" ]; then
		if ! command -v npm >/dev/null 2>&1; then
			say "npm is not installed, so Node $v cannot be fetched"
			continue
		fi
		tmp=$(mktemp -d)
		say "fetching Node $v (npm package node-$os-$arch@$v) into $dir"
		if tgz=$(cd "$tmp" && npm pack --silent "node-$os-$arch@$v" 2>/dev/null) &&
			mkdir -p "$dir" && tar xzf "$tmp/$tgz" -C "$dir"; then
			:
		else
			say "could not fetch node-$os-$arch@$v; the client is not tested on Node $v"
			rm -rf "$tmp" "$dir"
			continue
		fi
		rm -rf "$tmp"
	fi
	if out=$("$bin" --version 2>/dev/null) && [ "$out" = "v$v" ]; then
		paths+=("$bin")
	else
		say "$bin does not run as Node $v (printed '${out:-nothing}'); the client is not tested on it"
	fi
done
say "${#paths[@]} of ${#versions[@]} Node releases ready"
(
	IFS=:
	echo "${paths[*]}"
)
