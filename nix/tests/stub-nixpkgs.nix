# A stub of the few nixpkgs attributes nix/overlay.nix touches, so that the overlay can be
# evaluated here, where no nixpkgs is reachable. Every "derivation" is a real
# builtins.derivation whose builder records the command it would run.
let
  system = builtins.currentSystem;
  drv = name: script: extra:
    builtins.derivation ({
      inherit name system;
      builder = "/bin/sh";
      args = [ "-c" script ];
    } // extra);
  lib = {
    licenses.mit = "mit";
    platforms.linux = [ "x86_64-linux" ];
    concatMapStringsSep = sep: f: list: builtins.concatStringsSep sep (map f list);
    escapeShellArg = s: "'${s}'";
    makeOverridable = f: args: (f args) // { override = newArgs: f (args // newArgs); };
  };
  overrideable = d: d // { overrideAttrs = f: d // (f d); };
  base = self: {
    inherit lib;
    callPackage = path: args: import path ({ inherit (self) lib rustPlatform; } // args);
    rustPlatform.buildRustPackage = a:
      drv "${a.pname}-${a.version}" "cargo build ${builtins.concatStringsSep " " a.cargoBuildFlags}; mkdir -p $out/bin" { }
      // { inherit (a) meta; };
    runCommand = name: env: script: drv name script (builtins.removeAttrs env [ "nativeBuildInputs" ]
      // { nativeBuildInputs = map toString (env.nativeBuildInputs or [ ]); });
    writeShellScript = name: text: overrideable (drv name text { });
    writeShellScriptBin = name: text: drv name text { };
    dockerTools = {
      streamLayeredImage = args: {
        conf = drv "${args.name}-conf.json" "echo conf" { };
        passthru = { imageTag = "stub"; };
      };
      mergeImages = images: drv "orig-merge" "tar" { };
    };
    fakeNss = drv "orig-fake-nss" "nix" { };
    tarsum = drv "orig-tarsum" "go" { };
  };
  fix = f: let x = f x; in x;
  overlay = import ../overlay.nix;
in
fix (self: base self // overlay self (base self))
