# by-name style package for `stream-layered` (pkgs/by-name/st/stream-layered/package.nix in a nixpkgs checkout,
# where `src` would be a fetchFromGitHub of a release).
{
  lib,
  rustPlatform,
  src ? ../../..,
}:

rustPlatform.buildRustPackage {
  pname = "stream-layered";
  version = "0.1.0";
  inherit src;
  cargoLock.lockFile = ../../../Cargo.lock;

  cargoBuildFlags = [ "--package" "stream-layered" ];
  # The tool's own unit tests; the cross-tool tests need podman, skopeo and root.
  cargoTestFlags = [ "--package" "stream-layered" ];
  doCheck = true;

  meta = {
    description = "streamLayeredImage's image stream, byte-identical to stream_layered_image.py";
    mainProgram = "stream-layered";
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
  };
}
