# The images the harness builds from one package set: every dockerTools builder the overlay
# touches, across the options that change what its tools see. default.nix builds them from
# nixpkgs' dockerTools as it is (a) and with nix/overlay.nix (b).
#
# Each case is { image; kind; } where kind says how (a) and (b) are compared:
#   bytes   the outputs are equal byte for byte
#   gz/zst  the decompressed outputs are equal, and rebuilding reproduces the compressed bytes
#   time    docker-archives equal except the creation time (config `created`, history, and
#           so the config's name in manifest.json)
#   merge   (a) has a `repositories` member holding `null` where (b) has none (README
#           "Decisions"); without it the archives are equal byte for byte
#   tag     docker-archives equal but for the tag, which without `tag` is the hash of a store
#           path that the swaps change
#   dir     folders holding the same files, byte for byte
#
# The `step-*` cases are the steps the overlay cannot reach (mkPureLayer and the customisation
# layer, see nix/README.md): (a) is nixpkgs' step inside an image build, (b) is the
# dockertools-rs command that a small change to nixpkgs would run instead, on the same inputs.
pkgs:
let
  inherit (pkgs) dockerTools lib runCommand writeText;
  # (b)'s package set has the overlay's tools.
  rs = pkgs.dockertools-rs or null;
  step = nixpkgsStep: tool: if rs == null then nixpkgsStep else tool;
  example = import ../../nix/example/closure.nix { };

  # A small graph of store paths with shared dependencies, so that popularity decides layers.
  node =
    name: size: refs:
    runCommand name { inherit size refs; } ''
      mkdir -p $out/share/${name}
      head -c $size /dev/zero | tr '\0' x > $out/share/${name}/data
      for r in $refs; do echo "$r" >> $out/share/${name}/refs; done
      chmod 0755 $out/share/${name}/data
    '';
  nodes = rec {
    l1 = node "leaf-one" 1000 [ ];
    l2 = node "leaf-two" 3000 [ ];
    l3 = node "leaf-three" 200 [ ];
    l4 = node "leaf-four" 5000 [ ];
    m1 = node "middle-one" 100 [
      l1
      l2
    ];
    m2 = node "middle-two" 100 [
      l2
      l3
    ];
    top = node "top" 10 [
      m1
      m2
      l4
      example.app
    ];
  };

  # 120 store paths from one build (one output each), each referring to its parent in a binary
  # tree, so that the default maxLayers (100) has to merge layers.
  many =
    let
      count = 120;
      names = builtins.genList (i: "o${toString i}") count;
    in
    runCommand "many" { outputs = [ "out" ] ++ names; } ''
      for i in $(seq 0 ${toString (count - 1)}); do
        o="o$i"
        path=''${!o}
        mkdir -p $path/share
        head -c $(( (i * 37) % 500 + 1 )) /dev/zero > $path/share/data-$i
        if [ $i -gt 0 ]; then
          parent="o$(( (i - 1) / 2 ))"
          echo "''${!parent}" > $path/share/parent
        fi
        echo "$path" >> refs
      done
      mkdir -p $out
      cp refs $out/refs
    '';

  # File names and links that need more than a plain ustar header.
  odd = runCommand "odd-files" { } ''
    mkdir -p $out/odd
    cd $out/odd
    printf x > 'naïve ü.txt'
    printf y > $'non-utf8-\xff-name'
    printf z > 'back\slash'
    : > empty
    printf long > "$(printf 'n%.0s' $(seq 1 150))"
    ln -s "/$(printf 't%.0s' $(seq 1 150))/target" long-link
    deep=$(printf 'd%.0s' $(seq 1 60))
    mkdir -p "$deep/$deep/$deep/$deep/$deep"
    printf deep > "$deep/$deep/$deep/$deep/$deep/file"
    printf '#!/bin/sh\n' > run.sh
    chmod 0755 run.sh
  '';

  # The stream script's output, as a file.
  streamed =
    stream:
    runCommand "${baseNameOf stream.imageName}-streamed.tar" { } ''
      ${stream} > $out
    '';

  # A folder packed with its symlinks followed, to compare fakeNss trees by content.
  derefTar =
    name: tree:
    runCommand "${name}.tar" { } ''
      tar -C ${tree} -h --sort=name --mtime=@1 --owner=0 --group=0 --numeric-owner -cf $out .
    '';

  bytes = image: {
    inherit image;
    kind = "bytes";
  };

  layeredNone = dockerTools.buildLayeredImage {
    name = "layered-none";
    tag = "latest";
    compressor = "none";
    contents = [
      nodes.top
      example.data
    ];
    maxLayers = 4;
    config.Cmd = [ "${example.app}/bin/app" ];
  };

  imageCopyToRoot = dockerTools.buildImage {
    name = "image-copy-to-root";
    tag = "latest";
    compressor = "none";
    copyToRoot = [
      example.data
      nodes.m1
    ];
    config = {
      Cmd = [ "/share/middle-one/data" ];
      Env = [ "BASE=1" ];
    };
  };

  imageGz = dockerTools.buildImage {
    name = "image-gz";
    tag = "latest";
    copyToRoot = example.app;
    keepContentsDirlinks = true;
    extraCommands = ''
      mkdir -p tmp etc
      chmod 1777 tmp
      echo hello > etc/greeting
      ln -s ${nodes.l3}/share/leaf-three/data etc/leaf
    '';
    uid = 1000;
    gid = 100;
    architecture = "arm64";
    config.Env = [ "GZ=1" ];
  };

  imageZstdFromImage = dockerTools.buildImage {
    name = "image-zstd-from-image";
    tag = "v2";
    fromImage = imageCopyToRoot;
    compressor = "zstd";
    copyToRoot = [ nodes.m2 ];
    config.Env = [ "TOP=1" ];
  };

  layeredGz = dockerTools.buildLayeredImage {
    name = "layered-gz";
    tag = "latest";
    contents = [
      nodes.top
      example.app
    ];
  };

  layeredZstd = dockerTools.buildLayeredImage {
    name = "layered-zstd";
    tag = "latest";
    compressor = "zstd";
    contents = [ example.data ];
    maxLayers = 3;
  };

  streamClosure = dockerTools.streamLayeredImage {
    name = "stream-closure";
    tag = "latest";
    contents = [
      example.app
      example.data
    ];
    config = {
      Cmd = [ "${example.app}/bin/app" ];
      Env = [ "PATH=/bin" ];
    };
  };

  # What enableFakechroot's `proot -r <contents> ... fakeroot bash -c ...` runs inside the
  # contents, where host paths resolve in the contents: copies (links would point back into
  # the contents) of the host programs it needs and their libraries, at their host paths.
  guestRuntime =
    runCommand "fakechroot-guest-runtime"
      {
        programs = "bash sh fakeroot faked-sysv getopt sed cut ls sleep tar env cat mkdir chown chmod ln rm touch";
      }
      ''
        copy() {
          if [ ! -e "$out$2" ]; then
            mkdir -p "$out$(dirname "$2")"
            cp -L "$1" "$out$2"
          fi
        }
        with_libraries() {
          copy "$1" "$2"
          for lib in $(/usr/bin/ldd "$1" | grep -o '/[^ ]*' || true); do
            copy "$lib" "$lib"
          done
        }
        for p in $programs; do
          with_libraries /usr/bin/$p /usr/bin/$p
          copy /usr/bin/$p /bin/$p
        done
        for lib in /usr/lib/x86_64-linux-gnu/libfakeroot/*.so; do
          with_libraries $lib $lib
        done
      '';

  # Two store paths holding one file name with contents of one size: rsync's quick check
  # (same size, same mtime) keeps the first one's bytes and takes the last one's mode.
  clashOne = runCommand "clash-one" { } ''
    mkdir -p $out/etc
    echo aaaa > $out/etc/conf
  '';
  clashTwo = runCommand "clash-two" { } ''
    mkdir -p $out/etc
    echo bbbb > $out/etc/conf
    chmod 0755 $out/etc/conf
  '';

  # mkPureLayer (buildImage's copyToRoot layer) next to `layer-packer pure`.
  pureLayer =
    {
      name,
      keepContentsDirlinks ? false,
      copyToRoot ? [
        example.data
        nodes.m1
      ],
    }:
    let
      image = dockerTools.buildImage {
        inherit name copyToRoot keepContentsDirlinks;
        tag = "t";
        compressor = "none";
        uid = 1000;
        gid = 100;
        extraCommands = ''
          mkdir -p tmp
          chmod 1777 tmp
        '';
      };
    in
    step image.passthru.layer (
      runCommand "docker-layer-${name}" { nativeBuildInputs = [ rs.layer-packer ]; } ''
        layer-packer pure --out $out --base-json ${image.baseJson} --uid 1000 --gid 100 \
          --mkdir tmp:1777 ${lib.optionalString keepContentsDirlinks "--keep-dirlinks"} \
          ${lib.escapeShellArgs copyToRoot}
      ''
    );

  # mkPureLayer with any extraCommands next to `layer-packer pure` packing the folder that the
  # same rsync loop and extraCommands prepared (layer-packer replacing only tar, tee, tarsum
  # and jshon).
  preparedLayer =
    let
      copyToRoot = [
        example.app
        nodes.m2
      ];
      extraCommands = ''
        mkdir -p etc var/empty
        echo hello > etc/greeting
        chmod 0600 etc/greeting
        ln -s ../share/middle-two etc/middle
        ln etc/greeting etc/greeting-again
      '';
      image = dockerTools.buildImage {
        name = "step-prepared-layer";
        tag = "t";
        compressor = "none";
        inherit copyToRoot extraCommands;
      };
    in
    step image.passthru.layer (
      runCommand "docker-layer-step-prepared-layer"
        {
          nativeBuildInputs = [
            pkgs.rsync
            rs.layer-packer
          ];
        }
        ''
          mkdir layer
          for item in ${lib.escapeShellArgs copyToRoot}; do
            rsync -ak --chown=0:0 $item/ layer/
          done
          chmod ug+w layer
          (cd layer; ${extraCommands})
          # --keep-dirlinks: the folder is packed as it is, its symlinks to folders kept
          # (without it, layer-packer would copy their targets as a second `rsync -k` would).
          layer-packer pure --out $out --base-json ${image.baseJson} --keep-dirlinks layer
        ''
    );

  # streamLayeredImage's customisation layer next to `layer-packer customisation`.
  customisationLayer =
    let
      contents = [
        example.app
        nodes.m2
        pkgs.fakeNss
      ];
      stream = dockerTools.streamLayeredImage {
        name = "step-customisation-layer";
        tag = "t";
        inherit contents;
        extraCommands = ''
          mkdir -p tmp
          chmod 1777 tmp
        '';
      };
    in
    step
      (runCommand "customisation-layer" { nativeBuildInputs = [ pkgs.jq ]; } ''
        mkdir $out
        layer=$(jq -r .customisation_layer ${stream.conf})
        cp $layer/layer.tar $layer/checksum $out/
      '')
      (
        runCommand "customisation-layer" { nativeBuildInputs = [ rs.layer-packer ]; } ''
          layer-packer customisation --out $out --mkdir tmp:1777 ${lib.escapeShellArgs contents}
        ''
      );

  streamFromLayered = streamed (
    dockerTools.streamLayeredImage {
      name = "stream-from-layered";
      tag = "t";
      fromImage = layeredNone;
      contents = [ example.app ];
    }
  );

  # A derivation to make a nix-shell image for.
  hello = runCommand "hello" { greeting = "hello from the harness"; } ''
    mkdir -p $out/bin
    printf '#!/bin/sh\necho "%s"\n' "$greeting" > $out/bin/hello
    chmod +x $out/bin/hello
  '';
in
{
  cases = {
    # streamLayeredImage
    stream-closure = bytes (streamed streamClosure);
    stream-owner-arch-mtime = bytes (
      streamed (
        dockerTools.streamLayeredImage {
          name = "stream-owner-arch-mtime";
          tag = "t";
          contents = [ nodes.top ];
          uid = 1000;
          gid = 100;
          uname = "alice";
          gname = "users";
          architecture = "arm64";
          created = "2001-02-03T04:05:06Z";
          mtime = "2024-02-29T12:00:00+01:00";
          maxLayers = 3;
        }
      )
    );
    # JSON that Nix, jq and the stream script each print their own way: escapes, non-ASCII,
    # control characters, floats, integers past 2^53, null, empty objects.
    stream-config-json = bytes (
      streamed (
        dockerTools.streamLayeredImage {
          name = "stream-config-json";
          tag = "t";
          config = {
            Cmd = [
              "/bin/sh"
              "-c"
              "echo \"quoted\" \\ back"
            ];
            Env = [
              "UNICODE=naïve ✓ 😀"
              "TAB=a\tb"
              (builtins.fromJSON ''"CTRL=\u0001\u001f\u007f\u2028"'')
            ];
            Labels = {
              "org.example/ü" = "ß";
              empty = "";
            };
            Healthcheck = {
              Interval = 30000000000;
              Retries = 3;
              StartPeriod = 1.5;
              Big = 9223372036854775807;
              Negative = -0.25;
            };
            Volumes."/data" = { };
            ExposedPorts = { };
            StopSignal = null;
          };
        }
      )
    );
    # Owners that need pax records (ids past 8 octal digits, a long and a non-ASCII name),
    # file names that need them too, and an image name with a registry and capitals.
    stream-odd-files-owner = bytes (
      streamed (
        dockerTools.streamLayeredImage {
          name = "Registry.Example.com/Team/Odd";
          tag = "t";
          contents = [ odd ];
          uid = 3000000;
          gid = 4000000;
          uname = "a-user-name-well-past-thirty-two-bytes";
          gname = "grüppe";
        }
      )
    );
    # Several layers tie on closure size here: nixpkgs' auto-layer.py orders them as CPython's
    # set does (hash seed 0), and so does popularity-sorter.
    stream-many = {
      kind = "bytes";
      image = streamed (
        dockerTools.streamLayeredImage {
          name = "stream-many";
          tag = "t";
          contents = [ many ];
        }
      );
    };
    stream-many-pipeline = bytes (
      streamed (
        dockerTools.streamLayeredImage {
          name = "stream-many-pipeline";
          tag = "t";
          contents = [ many ];
          layeringPipeline = [
            [
              "subcomponent_out"
              [ "${many.o1}" ]
            ]
            [
              "over"
              "rest"
              [
                "pipe"
                [
                  [ "popularity_contest" ]
                  [
                    "limit_layers"
                    20
                  ]
                ]
              ]
            ]
            [ "flatten" ]
          ];
        }
      )
    );
    # Without `tag`, the tag is the hash of a store path that the swaps change.
    stream-default-tag = {
      kind = "tag";
      image = streamed (
        dockerTools.streamLayeredImage {
          name = "stream-default-tag";
          contents = [ nodes.l1 ];
        }
      );
    };
    stream-max-layers-2 = bytes (
      streamed (
        dockerTools.streamLayeredImage {
          name = "stream-max-layers-2";
          tag = "t";
          contents = [
            nodes.top
            example.data
          ];
          maxLayers = 2;
        }
      )
    );
    stream-no-store-paths = bytes (
      streamed (
        dockerTools.streamLayeredImage {
          name = "stream-no-store-paths";
          tag = "t";
          contents = [ example.app ];
          includeStorePaths = false;
        }
      )
    );
    stream-extra-fakeroot = bytes (
      streamed (
        dockerTools.streamLayeredImage {
          name = "stream-extra-fakeroot";
          tag = "t";
          contents = [
            example.app
            nodes.m2
          ];
          extraCommands = ''
            mkdir -p tmp data
            chmod 1777 tmp
            echo hello > data/greeting
            ln -s ${example.app}/bin/app app-link
          '';
          fakeRootCommands = ''
            mkdir -p home/alice
            chown 1000:100 home/alice data/greeting
            chmod 0700 home/alice
          '';
        }
      )
    );
    stream-fakechroot = bytes (
      streamed (
        dockerTools.streamLayeredImage {
          name = "stream-fakechroot";
          tag = "t";
          contents = [
            guestRuntime
            example.app
          ];
          enableFakechroot = true;
          fakeRootCommands = ''
            mkdir -p /var/lib/app /opt
            chown 1000:100 /var/lib/app
            chmod 0750 /var/lib/app
            ln -s ${example.app}/bin/app /opt/app
          '';
        }
      )
    );
    stream-pipeline = bytes (
      streamed (
        dockerTools.streamLayeredImage {
          name = "stream-pipeline";
          tag = "t";
          contents = [
            nodes.top
            example.data
          ];
          layeringPipeline = [
            [ "popularity_contest" ]
            [
              "limit_layers"
              3
            ]
          ];
        }
      )
    );
    # The pipeline as a JSON file, with the pipeline functions that take store paths.
    stream-pipeline-file = bytes (
      streamed (
        dockerTools.streamLayeredImage {
          name = "stream-pipeline-file";
          tag = "t";
          contents = [
            nodes.top
            example.data
          ];
          layeringPipeline = writeText "pipeline.json" (
            builtins.toJSON [
              [
                "split_paths"
                [ "${nodes.m1}" ]
              ]
              [
                "over"
                "main"
                [
                  "pipe"
                  [
                    [
                      "subcomponent_in"
                      [ "${nodes.m1}" ]
                    ]
                    [
                      "over"
                      "rest"
                      [ "popularity_contest" ]
                    ]
                  ]
                ]
              ]
              [ "flatten" ]
              [
                "map"
                [
                  "remove_paths"
                  "${nodes.l4}"
                ]
              ]
              [
                "limit_layers"
                4
              ]
            ]
          );
        }
      )
    );
    stream-from-image = bytes (
      streamed (
        dockerTools.streamLayeredImage {
          name = "stream-from-image";
          tag = "t";
          fromImage = imageGz;
          contents = [ nodes.m2 ];
          maxLayers = 4;
        }
      )
    );
    stream-from-layered = bytes streamFromLayered;
    stream-created-now = {
      kind = "time";
      image = streamed (
        dockerTools.streamLayeredImage {
          name = "stream-created-now";
          tag = "t";
          contents = [ example.app ];
          created = "now";
        }
      );
    };
    stream-nix-shell = bytes (
      # nixpkgs' fakeNss in both: the overlay's fakeNss is another store path (compared below).
      streamed ((dockerTools.override { inherit (pkgs) fakeNss; }).streamNixShellImage {
        drv = hello;
        tag = "t";
      })
    );

    # buildLayeredImage
    layered-none = bytes layeredNone;
    layered-gz = {
      kind = "gz";
      image = layeredGz;
    };
    layered-zstd = {
      kind = "zst";
      image = layeredZstd;
    };
    layered-nix-db = bytes (
      dockerTools.buildLayeredImageWithNixDb {
        name = "layered-nix-db";
        tag = "t";
        compressor = "none";
        contents = [ example.app ];
      }
    );

    # buildImage (copyToRoot, no runAsRoot): mkPureLayer's tarsum
    image-copy-to-root = bytes imageCopyToRoot;
    image-gz = {
      kind = "gz";
      image = imageGz;
    };
    image-zstd-from-image = {
      kind = "zst";
      image = imageZstdFromImage;
    };
    image-default-tag = {
      kind = "tag";
      image = dockerTools.buildImage {
        name = "image-default-tag";
        compressor = "none";
        copyToRoot = nodes.l1;
      };
    };
    # The creation time comes from one derivation that (a) and (b) share.
    image-created-now = bytes (
      dockerTools.buildImage {
        name = "image-created-now";
        tag = "t";
        compressor = "none";
        created = "now";
        copyToRoot = nodes.l1;
      }
    );

    # mergeImages
    merge-gz = {
      kind = "gz";
      image = dockerTools.mergeImages [
        imageCopyToRoot
        imageGz
      ];
    };
    merge-zstd = {
      kind = "zst";
      image = dockerTools.mergeImages [
        layeredGz
        imageZstdFromImage
      ];
    };
    # Layers that both images hold (stream-from-layered is built on layered-none).
    merge-shared-layers = {
      kind = "merge";
      image = dockerTools.mergeImages [
        layeredNone
        streamFromLayered
      ];
    };
    merge-no-repositories = {
      kind = "merge";
      image = dockerTools.mergeImages [
        layeredNone
        (streamed streamClosure)
      ];
    };

    # fakeNss, compared by content
    fake-nss = bytes (derefTar "fake-nss" dockerTools.fakeNss);
    fake-nss-override = bytes (
      derefTar "fake-nss-override" (
        dockerTools.fakeNss.override {
          extraPasswdLines = [ "alice:x:1000:100:Alice:/home/alice:/bin/sh" ];
          extraGroupLines = [ "users:x:100:alice" ];
        }
      )
    );

    # Steps the overlay cannot reach, next to their replacements
    step-pure-layer = {
      kind = "dir";
      image = pureLayer { name = "step-pure-layer"; };
    };
    step-pure-layer-dirlinks = {
      kind = "dir";
      image = pureLayer {
        name = "step-pure-layer-dirlinks";
        keepContentsDirlinks = true;
      };
    };
    step-pure-layer-same-size = {
      kind = "dir";
      image = pureLayer {
        name = "step-pure-layer-same-size";
        copyToRoot = [
          clashOne
          clashTwo
        ];
      };
    };
    step-prepared-layer = {
      kind = "dir";
      image = preparedLayer;
    };
    step-customisation-layer = {
      kind = "dir";
      image = customisationLayer;
    };

    # referencesByPopularity (closure-graph.py)
    references-by-popularity = bytes (pkgs.referencesByPopularity nodes.top);
  };

  # Calls that must fail the same way in (a) and (b).
  failing = {
    max-layers-one = dockerTools.streamLayeredImage {
      name = "max-layers-one";
      maxLayers = 1;
    };
  };
}
