# Evaluates the overlay against the stub and checks that every swapped step's builder calls a
# dockertools-rs binary. `nix-instantiate --eval --strict` prints true or fails with a message.
let
  pkgs = import ./stub-nixpkgs.nix;
  has = needle: hay: builtins.match ".*${needle}.*" hay != null;
  script = d: builtins.elemAt d.args 1;
  image = pkgs.dockerTools.streamLayeredImage { name = "demo"; };
  checks = {
    tarsum = pkgs.tarsum.name == "tarsum-0.1.0" && pkgs.tarsum.meta.mainProgram == "tarsum";
    packages = builtins.all (t: (builtins.getAttr t pkgs.dockertools-rs).meta.mainProgram == t)
      [ "tarsum" "layer-packer" "popularity-sorter" "stream-layered" "merge-images" "fake-nss" ];
    fakeNss = has "fake-nss [$]out" (script pkgs.fakeNss)
      && has "--extra-passwd-line 'alice:x:1:1::/:/bin/sh'" (script (pkgs.fakeNss.override { extraPasswdLines = [ "alice:x:1:1::/:/bin/sh" ]; }));
    referencesByPopularity = has "popularity-sorter closure-graph" (script (pkgs.referencesByPopularity "/nix/store/x"));
    flattenReferencesGraph = has "/bin/popularity-sorter pipeline" (script pkgs.flatten-references-graph);
    streamLayeredImage = has "/bin/stream-layered .*-demo-conf.json" (script image) && image.passthru.imageTag == "stub";
    mergeImages = has "merge-images [$]out [$]images" (script (pkgs.dockerTools.mergeImages [ ]));
  };
  failed = builtins.filter (n: !(builtins.getAttr n checks)) (builtins.attrNames checks);
in
if failed == [ ] then true else throw "overlay checks failed: ${builtins.concatStringsSep ", " failed}"
