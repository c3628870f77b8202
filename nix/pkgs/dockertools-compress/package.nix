# by-name style package for `dockertools-compress` (pkgs/by-name/do/dockertools-compress/package.nix in a nixpkgs checkout,
# where `src` would be a fetchFromGitHub of a release).
{
  lib,
  rustPlatform,
  src ? ../../..,
}:

rustPlatform.buildRustPackage {
  pname = "dockertools-compress";
  version = "0.1.0";
  inherit src;
  cargoLock.lockFile = ../../../Cargo.lock;

  cargoBuildFlags = [ "--package" "dockertools-compress" ];
  # The tool's own unit tests; the cross-tool tests need podman, skopeo and root.
  cargoTestFlags = [ "--package" "dockertools-compress" ];
  doCheck = true;

  meta = {
    description = "In-process gzip and zstd on stdin/stdout that answer to pigz's and zstd's flags as dockerTools calls them";
    mainProgram = "dockertools-compress";
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
  };
}
