# Store layer digests as Nix build products: one small derivation per store layer runs
# `stream-layered CONF --layer-info 1` on a conf that holds only that layer and the keys its
# tar depends on, so Nix caches each layer's diff_id and size, remote builders compute them in
# parallel, and an image rebuilt with one changed layer computes one digest.
# The stream's conf then gets them as `store_layer_infos`, and the stream reads each file once.
#
# Which paths form which layer is decided while building (dockerTools' layering runs in a
# derivation), so the layers are read from the built conf: import from derivation.
# See nix/README.md ("Layer digests as build products").
{
  lib,
  runCommand,
  stream-layered,
}:
let
  # The conf keys a store layer's tar depends on (stream-layered's `--layer-info`).
  layerKeys = [
    "store_dir"
    "mtime"
    "created"
    "uid"
    "gid"
    "uname"
    "gname"
  ];

  # The diff_id and size of one store layer: `{"diff_id": "sha256:…", "size": N}`.
  # Its inputs are the layer's paths and the owner and mtime settings, nothing of the rest of
  # the image, so the derivation is the same in every image holding the same layer.
  layerInfo =
    settings: paths:
    runCommand "docker-layer-info"
      {
        conf = builtins.toJSON (settings // { store_layers = [ paths ]; });
        passAsFile = [ "conf" ];
        # The paths as inputs: a remote builder gets them, and the derivation changes with them.
        layerPaths = map builtins.storePath paths;
        nativeBuildInputs = [ stream-layered ];
      }
      ''
        stream-layered "$confPath" --layer-info 1 > $out
      '';

  # A conf (a derivation or path holding dockerTools' conf JSON) with `store_layer_infos`
  # added, or the conf itself when its layers' times are "now" (nothing to cache) or it has
  # infos already.
  withLayerInfos =
    conf:
    let
      # fromJSON takes no string context; each layer's paths get theirs back in layerInfo.
      c = builtins.fromJSON (builtins.unsafeDiscardStringContext (builtins.readFile conf));
      settings = lib.filterAttrs (k: _: builtins.elem k layerKeys) c;
      infos = map (layerInfo settings) (c.store_layers or [ ]);
      now = (c.mtime or c.created or null) == "now";
    in
    if now || c ? store_layer_infos || infos == [ ] then
      conf
    else
      runCommand (conf.name or "conf.json")
        {
          inherit conf infos;
          passthru = { inherit infos; };
        }
        ''
          # The conf's text is kept as it is (a JSON tool could rewrite its numbers); the infos
          # go in as one more key before its closing brace.
          text=$(cat "$conf")
          case $text in
            *'}') ;;
            *) echo "layer-infos: $conf does not end with a JSON object's closing brace" >&2; exit 1 ;;
          esac
          printf '%s,"store_layer_infos":[%s]}\n' "''${text%\}}" "$(cat $infos | paste -sd, -)" > $out
        '';

  # dockerTools' `runCommand` for `dockerTools.override`: the one call that writes
  # streamLayeredImage's stream wrapper (it has `conf` and `streamScript`) gets the conf with
  # infos when the stream script is stream-layered; every other call is nixpkgs' runCommand.
  hookedRunCommand =
    name: env: script:
    let
      ours =
        env ? conf && env ? streamScript && lib.hasSuffix "/bin/stream-layered" "${env.streamScript}";
    in
    runCommand name (if ours then env // { conf = withLayerInfos env.conf; } else env) script;
in
{
  inherit layerInfo withLayerInfos;
  runCommand = hookedRunCommand;
}
