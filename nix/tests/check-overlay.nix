# Evaluates nix/overlay.nix against nixpkgs' real dockerTools expression (with the package set
# of tests/nixpkgs-harness) and checks that every builder reaches the swapped steps, including
# those that dockerTools' `rec` set calls from inside (buildLayeredImage, streamNixShellImage,
# buildLayeredImageWithNixDb), and that one swap can be taken back without the others.
# `nix-instantiate --eval --strict --argstr nixpkgs PATH` prints true or fails naming the checks.
{ nixpkgs }:
let
  set =
    overlays:
    import ../../tests/nixpkgs-harness/pkgs.nix {
      inherit nixpkgs overlays;
    };
  orig = set [ ];
  pkgs = set [ (import ../overlay.nix) ];
  rs = pkgs.dockertools-rs;
  dt = pkgs.dockerTools;
  inherit (pkgs.lib) hasInfix hasSuffix;
  streamsWithRs = stream: hasSuffix "/bin/stream-layered" "${stream.streamScript}";
  uses = drv: input: builtins.elem input drv.nativeBuildInputs;
  layersOf = stream: stream.conf.layersJsonFile;

  layered = dt.buildLayeredImage { name = "layered"; };
  piped = dt.streamLayeredImage {
    name = "piped";
    layeringPipeline = [ [ "popularity_contest" ] ];
    contents = [ pkgs.jq ];
  };
  shell = dt.streamNixShellImage { drv = pkgs.jq; };
  image = dt.buildImage {
    name = "image";
    copyToRoot = pkgs.jq;
  };
  # Taking the stream script back leaves the other swaps in place.
  partial = (dt.override { writePython3 = orig.writers.writePython3; }).buildLayeredImage {
    name = "partial";
  };

  checks = {
    packages = builtins.all (t: rs.${t}.meta.mainProgram == t) [
      "tarsum"
      "layer-packer"
      "popularity-sorter"
      "stream-layered"
      "merge-images"
      "fake-nss"
    ];
    streamLayeredImage = streamsWithRs (dt.streamLayeredImage { name = "s"; });
    buildLayeredImage = streamsWithRs layered.passthru.stream;
    streamNixShellImage = streamsWithRs shell;
    buildLayeredImageWithNixDb = streamsWithRs (dt.buildLayeredImageWithNixDb { name = "db"; }).passthru.stream;
    autoLayer = uses (layersOf layered.passthru.stream) rs.popularity-sorter-python3;
    layeringPipeline = uses (layersOf piped) rs.flattenReferencesGraph;
    tarsum = dt.tarsum == rs.tarsum && uses image.passthru.layer rs.tarsum;
    fakeNss =
      dt.fakeNss == rs.fakeNss
      && hasInfix "--extra-passwd-line 'alice:x:1:1::/:/bin/sh (x)'" (
        dt.fakeNss.override { extraPasswdLines = [ "alice:x:1:1::/:/bin/sh (x)" ]; }
      ).buildCommand;
    mergeImages = uses (dt.mergeImages [ ]) rs.merge-images;
    referencesByPopularity = uses (pkgs.referencesByPopularity pkgs.jq) rs.popularity-sorter-python3;
    oneAtATime =
      !(streamsWithRs partial.passthru.stream)
      && uses (layersOf partial.passthru.stream) rs.popularity-sorter-python3;
  };
  failed = builtins.filter (n: !checks.${n}) (builtins.attrNames checks);
in
if failed == [ ] then
  true
else
  throw "overlay checks failed: ${builtins.concatStringsSep ", " failed}"
