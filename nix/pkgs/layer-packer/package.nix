# by-name style package for `layer-packer` (pkgs/by-name/la/layer-packer/package.nix in a nixpkgs checkout,
# where `src` would be a fetchFromGitHub of a release).
{
  lib,
  rustPlatform,
  src ? ../../..,
}:

rustPlatform.buildRustPackage {
  pname = "layer-packer";
  version = "0.1.0";
  inherit src;
  cargoLock.lockFile = ../../../Cargo.lock;

  cargoBuildFlags = [ "--package" "layer-packer" ];
  # The tool's own unit tests; the cross-tool tests need podman, skopeo and root.
  cargoTestFlags = [ "--package" "layer-packer" ];
  doCheck = true;

  meta = {
    description = "Deterministic dockerTools layer tarballs with sha256 and tarsum in one pass";
    mainProgram = "layer-packer";
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
  };
}
