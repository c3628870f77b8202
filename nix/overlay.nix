# Swaps dockertools-rs into nixpkgs' dockerTools, one step at a time, through the expression's
# own parameters (`dockerTools.override`), so that every builder of its `rec` set, such as
# buildLayeredImage and streamNixShellImage calling streamLayeredImage, gets the new step.
# Each line of the override is independent: keep only the ones you want (see nix/README.md).
final: prev:
let
  # Tools that run inside builds come from the build platform's package set.
  rs = final.buildPackages.dockertools-rs;
in
{
  dockertools-rs = {
    tarsum = final.callPackage ./pkgs/tarsum/package.nix { };
    layer-packer = final.callPackage ./pkgs/layer-packer/package.nix { };
    popularity-sorter = final.callPackage ./pkgs/popularity-sorter/package.nix { };
    stream-layered = final.callPackage ./pkgs/stream-layered/package.nix { };
    merge-images = final.callPackage ./pkgs/merge-images/package.nix { };
    fake-nss = final.callPackage ./pkgs/fake-nss/package.nix { };
    dockertools-compress = final.callPackage ./pkgs/dockertools-compress/package.nix { };

    # The compressors dockerTools runs (`pigz -p$NIX_BUILD_CORES -nTR`, `zstd -T$NIX_BUILD_CORES`,
    # and their `-d`): dockertools-compress under those names. Only the flags dockerTools passes
    # (and a few that change nothing) are accepted; anything else is an error, not ignored.
    pigz = final.runCommand "pigz-dockertools-compress" { meta.mainProgram = "pigz"; } ''
      mkdir -p $out/bin
      ln -s ${rs.dockertools-compress}/bin/dockertools-compress $out/bin/pigz
    '';
    zstd = final.runCommand "zstd-dockertools-compress" { meta.mainProgram = "zstd"; } ''
      mkdir -p $out/bin
      ln -s ${rs.dockertools-compress}/bin/dockertools-compress $out/bin/zstd
    '';

    # dockerTools builds its stream script with `writePython3 "stream" { } ./stream_layered_image.py`;
    # this writePython3 answers that one call with stream-layered (same conf, same flags) and
    # hands every other script to nixpkgs' writer.
    writePython3 =
      name: options: script:
      if baseNameOf (toString script) == "stream_layered_image.py" then
        "${rs.stream-layered}/bin/stream-layered"
      else
        final.buildPackages.writers.writePython3 name options script;

    # A `python3` for nixpkgs' layering wrappers (auto-layer.nix, references-by-popularity),
    # which run `python3 <script> ARGS...`: the two scripts it knows become popularity-sorter,
    # anything else is refused rather than run by something that is not Python.
    popularity-sorter-python3 = final.writeShellScriptBin "python3" ''
      script=''${1:-}
      shift || true
      case ''${script##*/} in
        *-auto-layer.py) exec ${rs.popularity-sorter}/bin/popularity-sorter auto-layer "$@" ;;
        *-closure-graph.py) exec ${rs.popularity-sorter}/bin/popularity-sorter closure-graph "$@" ;;
      esac
      echo "dockertools-rs python3: only auto-layer.py and closure-graph.py are known, not '$script'" >&2
      exit 2
    '';

    # The default layering (no layeringPipeline): nixpkgs' auto-layer.nix, its script run by
    # `popularity-sorter auto-layer`.
    dockerAutoLayer = prev.buildPackages.dockerAutoLayer.override {
      python3 = rs.popularity-sorter-python3;
    };

    # The layeringPipeline command that nixpkgs' make-layers.nix runs.
    flattenReferencesGraph = final.writeShellScriptBin "flatten_references_graph" ''
      exec ${rs.popularity-sorter}/bin/popularity-sorter pipeline "$@"
    '';
    dockerMakeLayers = prev.buildPackages.dockerMakeLayers.override {
      flattenReferencesGraph = rs.flattenReferencesGraph;
    };

    # fakeNss with the same overrides (extraPasswdLines, extraGroupLines). Its files are real
    # files, where nixpkgs' are symlinks into four other store paths.
    fakeNss = final.lib.makeOverridable (
      {
        extraPasswdLines ? [ ],
        extraGroupLines ? [ ],
      }:
      final.runCommand "fake-nss" { nativeBuildInputs = [ rs.fake-nss ]; } ''
        fake-nss $out ${
          final.lib.concatMapStringsSep " " (
            l: "--extra-passwd-line ${final.lib.escapeShellArg l}"
          ) extraPasswdLines
        } ${
          final.lib.concatMapStringsSep " " (
            l: "--extra-group-line ${final.lib.escapeShellArg l}"
          ) extraGroupLines
        }
      ''
    ) { };

    # Opt-in, not used by the dockerTools below: store layer digests as Nix build products,
    # fed to the stream as `store_layer_infos` (nix/README.md, "Layer digests as build products").
    # Adopt with `dockerTools = prev.dockerTools.override { runCommand = final.dockertools-rs.layerInfos.runCommand; }`.
    layerInfos = final.callPackage ./layer-infos.nix { inherit (rs) stream-layered; };

    # mergeImages, without unpacking: output compressed like the last image, as before.
    mergeImages =
      images:
      final.runCommand "merge-docker-images" {
        inherit images;
        nativeBuildInputs = [ rs.merge-images ];
      } "merge-images $out $images";
  };

  dockerTools =
    (prev.dockerTools.override {
      writePython3 = rs.writePython3;
      tarsum = rs.tarsum;
      pigz = rs.pigz;
      zstd = rs.zstd;
      fakeNss = final.dockertools-rs.fakeNss;
      buildPackages = final.buildPackages // {
        dockerAutoLayer = rs.dockerAutoLayer;
        dockerMakeLayers = rs.dockerMakeLayers;
      };
    })
    // {
      # mergeImages has no parameter to swap and nothing in dockerTools calls it.
      mergeImages = final.dockertools-rs.mergeImages;
    };

  # referencesByPopularity (closure-graph.py), outside dockerTools.
  referencesByPopularity = prev.referencesByPopularity.override {
    python3 = rs.popularity-sorter-python3;
  };
}
