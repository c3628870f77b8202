# by-name style package for `fake-nss` (pkgs/by-name/fa/fake-nss/package.nix in a nixpkgs checkout,
# where `src` would be a fetchFromGitHub of a release).
{
  lib,
  rustPlatform,
  src ? ../../..,
}:

rustPlatform.buildRustPackage {
  pname = "fake-nss";
  version = "0.1.0";
  inherit src;
  cargoLock.lockFile = ../../../Cargo.lock;

  cargoBuildFlags = [ "--package" "fake-nss" ];
  # The tool's own unit tests; the cross-tool tests need podman, skopeo and root.
  cargoTestFlags = [ "--package" "fake-nss" ];
  doCheck = true;

  meta = {
    description = "nixpkgs' fakeNss files as a folder or a layer tar";
    mainProgram = "fake-nss";
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
  };
}
