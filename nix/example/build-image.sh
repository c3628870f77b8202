#!/usr/bin/env bash
# Builds a docker-archive image end to end with the dockertools-rs tools, the way
# streamLayeredImage composes its steps:
#   closure graph -> popularity-sorter auto-layer -> store_layers
#   fake-nss + contents -> layer-packer customisation -> customisation layer
#   base JSON + store_layers -> stream-layered --make-conf -> conf.json -> stream-layered -> image
#
# usage: build-image.sh [--nix] OUTDIR     (the tools must be on PATH)
# Without --nix the closure is the bundled example tree under nix/example/tree, laid out as a
# store in OUTDIR/store (no Nix needed). With --nix it is built by nix-bin from closure.nix in the
# real /nix/store (root, offline, no daemon; jq extracts the graph). Without --nix it needs only
# bash, coreutils and tar besides the tools.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
nix=false
if [ "${1:-}" = --nix ]; then nix=true; shift; fi
out=${1:?usage: build-image.sh [--nix] OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
say() { printf 'demo: %s\n' "$*" >&2; }

if $nix; then
  export NIX_CONFIG=$'build-users-group =\nsubstituters =\nexperimental-features = nix-command\nsandbox = false'
  say "building the example closure with nix-build (sandbox off, host /bin/sh and /bin/busybox)"
  # Nix 2.8 without a daemon sometimes kills a quick builder right after its log pipe closes
  # ("failed due to signal 9" on a loaded machine); a second attempt succeeds.
  build() { nix-build "$here/closure.nix" -A "$1" --no-out-link || nix-build "$here/closure.nix" -A "$1" --no-out-link; }
  inputs=$(build inputs)
  app=$(build app)
  store_dir=/nix/store
  jq '.graph' "$inputs" > "$out/graph-list.json"
  entry="$app/bin/app"
  contents=("$app")
else
  store_dir="$out/store"
  rm -rf "$store_dir" && mkdir -p "$store_dir"
  bb="$store_dir/5g1pgkh6pm2a4jbmxs7xqh0hn5cbqxyd-busybox"
  hello="$store_dir/0ns7zn4wcbf3vpnvx0jxhyfqjscz09dv-hello"
  data="$store_dir/9vwd7r5f5a4bqm3m8rfl9pbqvz53xg62-demo-data"
  mkdir -p "$bb/bin" "$hello/bin"
  if [ -x /bin/busybox ]; then cp /bin/busybox "$bb/bin/busybox"; else say "no /bin/busybox: the image builds but has no shell to run"; : > "$bb/bin/busybox"; fi
  ln -s busybox "$bb/bin/sh"
  printf '#!%s/bin/sh\necho "Hello from the dockertools-rs demo image"\n' "$bb" > "$hello/bin/hello"
  cp -R "$here/tree/data" "$data"
  chmod -R a-w "$bb" "$hello" "$data"; chmod 0555 "$hello/bin/hello"
  size() { du -sb "$1" | cut -f1; }
  cat > "$out/graph-list.json" <<JSON
[{"path": "$bb", "references": [], "narSize": $(size "$bb")},
 {"path": "$hello", "references": ["$bb", "$hello"], "narSize": $(size "$hello")},
 {"path": "$data", "references": [], "narSize": $(size "$data")}]
JSON
  entry="$hello/bin/hello"
  contents=("$hello" "$data")
fi

say "layering the closure (popularity-sorter auto-layer)"
popularity-sorter auto-layer "$out/graph-list.json" /dev/null 99 > "$out/store-layers.json"

say "fake-nss and the customisation layer (layer-packer customisation)"
rm -rf "$out/fake-nss" "$out/customisation-layer"
fake-nss "$out/fake-nss"
layer-packer customisation --out "$out/customisation-layer" --mkdir tmp:1777 "${contents[@]}" "$out/fake-nss"

printf '{"architecture": "amd64", "config": {"Cmd": ["%s"], "Env": ["PATH=/bin"]}, "os": "linux"}\n' "$entry" > "$out/base.json"
say "writing conf.json (stream-layered --make-conf)"
stream-layered --make-conf --base-json "$out/base.json" --store-layers "$out/store-layers.json" \
  --customisation-layer "$out/customisation-layer" --conf-repo-tag dockertools-demo:latest \
  --store-dir "$store_dir" > "$out/conf.json"

say "streaming the image (stream-layered)"
stream-layered "$out/conf.json" > "$out/image.tar"

digest=$(sha256sum "$out/image.tar" | cut -d' ' -f1)
config=$(tar -xOf "$out/image.tar" manifest.json | sed -n 's/.*"Config": "\([0-9a-f]*\.json\)".*/\1/p')
say "done"
# podman files the loaded image under localhost/, the name it resolves whatever its short-name
# settings (Debian's podman refuses the short one).
cat <<MSG
image:      $out/image.tar
sha256:     $digest
image id:   sha256:${config%.json}
load it:    podman load -i $out/image.tar     (or: docker load -i $out/image.tar)
run it:     podman run --rm localhost/dockertools-demo:latest
MSG
