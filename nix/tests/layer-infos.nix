# Builds one image with nixpkgs' real streamLayeredImage (the harness's package set and
# nix/overlay.nix) twice: as the overlay has it, and opted into per-layer infos
# (`runCommand = dockertools-rs.layerInfos.runCommand`). The output holds both streams, the fed
# conf, and, for an image where one leaf path changed, which layer-info derivations differ.
# tests/tests/layer_info.rs builds it with nix-bin (offline, no sandbox) and compares.
{
  nixpkgs,
  tools,
  python3 ? "/usr/bin/python3",
}:
let
  pkgs = import ../../tests/nixpkgs-harness/pkgs.nix {
    inherit nixpkgs tools python3;
    overlays = [ (import ../overlay.nix) ];
  };
  inherit (pkgs) runCommand;
  rs = pkgs.dockertools-rs;
  fed = pkgs.dockerTools.override { runCommand = rs.layerInfos.runCommand; };
  example = import ../example/closure.nix { };
  leaf =
    text:
    runCommand "leaf" { inherit text; } ''
      mkdir -p $out/share
      printf '%s\n' "$text" > $out/share/leaf
    '';
  args = contents: {
    name = "layer-infos";
    tag = "latest";
    inherit contents;
    uid = 1000;
    gname = "users";
    mtime = "2001-02-03T04:05:06Z";
    config.Cmd = [ "${example.app}/bin/app" ];
  };
  plain = pkgs.dockerTools.streamLayeredImage (args [ example.app example.data (leaf "one") ]);
  withInfos = fed.streamLayeredImage (args [ example.app example.data (leaf "one") ]);
  changed = fed.streamLayeredImage (args [ example.app example.data (leaf "two") ]);
  infoDrvs =
    image: map (d: builtins.unsafeDiscardStringContext d.drvPath) (rs.layerInfos.withLayerInfos image.conf).infos;
  # Layer-info derivations of one image that the other does not have.
  only = a: b: builtins.filter (d: !(builtins.elem d b)) a;
in
runCommand "layer-infos-test"
  {
    drvs = builtins.toJSON {
      image = infoDrvs withInfos;
      onlyInChanged = only (infoDrvs changed) (infoDrvs withInfos);
      onlyInImage = only (infoDrvs withInfos) (infoDrvs changed);
    };
    fedConf = rs.layerInfos.withLayerInfos withInfos.conf;
  }
  ''
    mkdir $out
    ${plain} > $out/plain.tar
    ${withInfos} > $out/fed.tar
    cp $fedConf $out/fed-conf.json
    cat ${withInfos} > $out/fed-stream-script
    printf '%s' "$drvs" > $out/drvs.json
  ''
