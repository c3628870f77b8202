# Swaps dockertools-rs into dockerTools one step at a time. Each attribute below is independent:
# copy only the ones you want into your own overlay.
final: prev:
let
  rs = final.dockertools-rs;
in
{
  dockertools-rs = {
    tarsum = final.callPackage ./pkgs/tarsum/package.nix { };
    layer-packer = final.callPackage ./pkgs/layer-packer/package.nix { };
    popularity-sorter = final.callPackage ./pkgs/popularity-sorter/package.nix { };
    stream-layered = final.callPackage ./pkgs/stream-layered/package.nix { };
    merge-images = final.callPackage ./pkgs/merge-images/package.nix { };
    fake-nss = final.callPackage ./pkgs/fake-nss/package.nix { };
  };

  # 1. The tarsum of buildImage/mkPureLayer: dockerTools takes `tarsum` from the package set.
  tarsum = rs.tarsum;

  # 2. fakeNss: the same attribute and overrides (extraPasswdLines, extraGroupLines).
  fakeNss = final.lib.makeOverridable (
    { extraPasswdLines ? [ ], extraGroupLines ? [ ] }:
    final.runCommand "fake-nss" { nativeBuildInputs = [ rs.fake-nss ]; } ''
      fake-nss $out ${final.lib.concatMapStringsSep " " (l: "--extra-passwd-line ${final.lib.escapeShellArg l}") extraPasswdLines} \
        ${final.lib.concatMapStringsSep " " (l: "--extra-group-line ${final.lib.escapeShellArg l}") extraGroupLines}
    ''
  ) { };

  # 3. referencesByPopularity: closure-graph.py replaced by `popularity-sorter closure-graph`.
  referencesByPopularity = path:
    final.runCommand "closure-paths" {
      exportReferencesGraph.graph = path;
      __structuredAttrs = true;
      nativeBuildInputs = [ rs.popularity-sorter ];
    } ''
      popularity-sorter closure-graph "$NIX_ATTRS_JSON_FILE" graph > ''${outputs[out]}
    '';

  # 4. The layeringPipeline step: flatten-references-graph's command, backed by popularity-sorter.
  flatten-references-graph = final.writeShellScriptBin "flatten_references_graph" ''
    exec ${rs.popularity-sorter}/bin/popularity-sorter pipeline "$@"
  '';

  dockerTools = prev.dockerTools // {
    # 5. streamLayeredImage: the same conf, streamed by stream-layered instead of the Python script.
    streamLayeredImage = args:
      let
        orig = prev.dockerTools.streamLayeredImage args;
      in
      (final.writeShellScript "stream-${args.name}" ''
        exec ${rs.stream-layered}/bin/stream-layered ${orig.conf} "$@"
      '').overrideAttrs (old: {
        passthru = (old.passthru or { }) // orig.passthru // { streamScript = "${rs.stream-layered}/bin/stream-layered"; };
      });

    # 6. mergeImages: no unpacking; output compressed like the last image, as before.
    mergeImages = images:
      final.runCommand "merge-docker-images" {
        inherit images;
        nativeBuildInputs = [ rs.merge-images ];
      } ''
        merge-images $out $images
      '';
  };
}
