# by-name style package for `popularity-sorter` (pkgs/by-name/po/popularity-sorter/package.nix in a nixpkgs checkout,
# where `src` would be a fetchFromGitHub of a release).
{
  lib,
  rustPlatform,
  src ? ../../..,
}:

rustPlatform.buildRustPackage {
  pname = "popularity-sorter";
  version = "0.1.0";
  inherit src;
  cargoLock.lockFile = ../../../Cargo.lock;

  cargoBuildFlags = [ "--package" "popularity-sorter" ];
  # The tool's own unit tests; the cross-tool tests need podman, skopeo and root.
  cargoTestFlags = [ "--package" "popularity-sorter" ];
  doCheck = true;

  meta = {
    description = "referencesByPopularity, auto-layer and flatten-references-graph, byte-identical and fast";
    mainProgram = "popularity-sorter";
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
  };
}
