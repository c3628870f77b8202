# Builds every image of images.nix twice, (a) with nixpkgs' dockerTools as it is and (b) with
# nix/overlay.nix, and links them into one output: a/NAME, b/NAME and cases.json (each case's
# kind and the two derivations, for `nix-store --realise --check`).
#
#   nix-build tests/nixpkgs-harness --arg nixpkgs /abs/path/to/reference/nixpkgs \
#     --argstr tools "$PWD/target/release" --argstr python3 "$(command -v python3)"
#
# with `sandbox = false`, `build-users-group =` and `substituters =` (see nix/README.md).
{
  nixpkgs,
  tools,
  python3 ? "/usr/bin/python3",
  go ? null,
  mobySrc ? null,
  salt ? "",
}:
let
  set =
    overlays:
    import ./pkgs.nix {
      inherit
        nixpkgs
        tools
        python3
        go
        mobySrc
        overlays
        salt
        ;
    };
  a = set [ ];
  b = set [ (import ../../nix/overlay.nix) ];
  imagesA = import ./images.nix a;
  imagesB = import ./images.nix b;
  inherit (a) lib;
  names = builtins.attrNames imagesA.cases;
  drv = d: builtins.unsafeDiscardStringContext d.drvPath;
  index = lib.genAttrs names (n: {
    inherit (imagesA.cases.${n}) kind;
    a = drv imagesA.cases.${n}.image;
    b = drv imagesB.cases.${n}.image;
  });
  links = lib.concatMapStrings (n: ''
    ln -s ${imagesA.cases.${n}.image} $out/a/${n}
    ln -s ${imagesB.cases.${n}.image} $out/b/${n}
  '') names;
in
{
  inherit a b;
  failing = {
    a = imagesA.failing;
    b = imagesB.failing;
  };
  all = a.runCommand "dockertools-harness" { index = builtins.toJSON index; } ''
    mkdir -p $out/a $out/b
    ${links}
    printf '%s' "$index" > $out/cases.json
  '';
}
