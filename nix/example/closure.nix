# A small real closure for the --nix demo and the pipeline tests, built with nix-bin alone
# (no nixpkgs): busybox copied from the host into a store path, an app whose script refers to it,
# and a data path with long names, symlinks and hard links. `inputs` carries the closure graph
# that exportReferencesGraph writes with __structuredAttrs.
#
# Build with: nix-build closure.nix -A inputs --option sandbox false ...
# (see build-image.sh for the settings; /bin/sh, /bin/bash and coreutils come from the host).
{ message ? "Hello from a dockertools-rs image built from a real Nix store" }:
let
  sh = "/bin/sh";
  system = builtins.currentSystem;
  # Nix 2.8 without a daemon kills a builder's process group once its log pipe is closed, so a
  # builder caught between closing its descriptors and exiting "fails due to signal 9" (often,
  # on a loaded machine). A child holding the pipe until the builder is a zombie prevents it.
  guard = ''
    builder=$$
    ( while read -r _ _ state _ < /proc/$builder/stat; do [ "$state" = Z ] && break; /bin/sleep 0.02; done ) &
  '';
  busybox = builtins.derivation {
    name = "busybox";
    inherit system;
    builder = sh;
    args = [ "-c" "${guard} /bin/mkdir -p $out/bin && /bin/cp /bin/busybox $out/bin/busybox && /bin/ln -s busybox $out/bin/sh" ];
  };
  app = builtins.derivation {
    name = "demo-app";
    inherit system;
    builder = sh;
    args = [ "-c" ''
      ${guard}
      /bin/mkdir -p $out/bin
      /bin/printf '#!%s/bin/sh\necho "%s"\n' ${busybox} "${message}" > $out/bin/app
      /bin/chmod 0555 $out/bin/app
    '' ];
  };
  data = builtins.derivation {
    name = "demo-data";
    inherit system;
    builder = sh;
    args = [ "-c" ''
      ${guard}
      d=$out/share/a-directory-with-a-rather-long-name-to-push-paths-past-one-hundred-bytes/and-deeper
      /bin/mkdir -p $d $out/empty
      /bin/echo hello > $d/file-with-a-long-name-that-needs-a-gnu-or-pax-long-name-record.txt
      /bin/ln $d/file-with-a-long-name-that-needs-a-gnu-or-pax-long-name-record.txt $out/share/hardlink
      /bin/ln -s ../share $out/empty/link-to-share
      /bin/ln -s /nonexistent $out/dangling
    '' ];
  };
in {
  inherit busybox app data;
  inputs = builtins.derivation {
    name = "demo-image-inputs";
    inherit system;
    builder = "/bin/bash";
    __structuredAttrs = true;
    exportReferencesGraph.graph = [ app data ];
    args = [ "-c" ''
      ${guard}
      . "$NIX_ATTRS_SH_FILE"
      /bin/cp "$NIX_ATTRS_JSON_FILE" "$NIX_BUILD_TOP/graph.json"
      /bin/cp "$NIX_BUILD_TOP/graph.json" "''${outputs[out]}"
    '' ];
  };
}
