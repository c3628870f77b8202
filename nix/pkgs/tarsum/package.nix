# by-name style package for `tarsum` (pkgs/by-name/ta/tarsum/package.nix in a nixpkgs checkout,
# where `src` would be a fetchFromGitHub of a release).
{
  lib,
  rustPlatform,
  src ? ../../..,
}:

rustPlatform.buildRustPackage {
  pname = "tarsum";
  version = "0.1.0";
  inherit src;
  cargoLock.lockFile = ../../../Cargo.lock;

  cargoBuildFlags = [ "--package" "tarsum" ];
  # The tool's own unit tests; the cross-tool tests need podman, skopeo and root.
  cargoTestFlags = [ "--package" "tarsum" ];
  doCheck = true;

  meta = {
    description = "Docker tarsum v1 of a tar stream, bit-exact with nixpkgs' Go tarsum";
    mainProgram = "tarsum";
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
  };
}
