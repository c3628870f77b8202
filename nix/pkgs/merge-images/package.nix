# by-name style package for `merge-images` (pkgs/by-name/me/merge-images/package.nix in a nixpkgs checkout,
# where `src` would be a fetchFromGitHub of a release).
{
  lib,
  rustPlatform,
  src ? ../../..,
}:

rustPlatform.buildRustPackage {
  pname = "merge-images";
  version = "0.1.0";
  inherit src;
  cargoLock.lockFile = ../../../Cargo.lock;

  cargoBuildFlags = [ "--package" "merge-images" ];
  # The tool's own unit tests; the cross-tool tests need podman, skopeo and root.
  cargoTestFlags = [ "--package" "merge-images" ];
  doCheck = true;

  meta = {
    description = "dockerTools.mergeImages without unpacking";
    mainProgram = "merge-images";
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
  };
}
