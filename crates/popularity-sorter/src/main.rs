//! `popularity-sorter`: closure-graph, auto-layer and pipeline subcommands.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use popularity_sorter::Error;

/// Order a Nix closure by popularity and split it into image layers, exactly as nixpkgs'
/// closure-graph.py, auto-layer.py and flatten-references-graph do.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// closure-graph.py FILE KEY: store paths of FILE[KEY], most popular first, one per line.
    ClosureGraph {
        /// exportReferencesGraph JSON (`-` for stdin).
        file: PathBuf,
        /// The key of the node list in FILE.
        key: String,
        /// Print streamLayeredImage's store_layers JSON for at most N layers instead (jq's format).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        max_layers: Option<u64>,
    },
    /// auto-layer.py GRAPH_LIST IGNORE_FILE LAYER_LIMIT: the layers as one JSON line.
    AutoLayer {
        /// The bare JSON list of nodes (`-` for stdin).
        graph_list: PathBuf,
        /// Paths to leave out of the output, one per line.
        ignore_file: PathBuf,
        /// Maximum number of layers (nixpkgs passes maxLayers - 1).
        #[arg(allow_negative_numbers = true)]
        layer_limit: i64,
    },
    /// python -m flatten_references_graph FILE: run the layeringPipeline of FILE.
    Pipeline {
        /// {graph, pipeline, exclude_paths?} JSON (`-` for stdin).
        file: PathBuf,
    },
}

#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error("{}: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: {source}", .path.display())]
    Input { path: PathBuf, source: Error },
    #[error("writing stdout: {0}")]
    Out(#[from] io::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, MainError> {
    dockertools_common::cli::read_input(path).map_err(|source| MainError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn run(args: Args) -> Result<(), MainError> {
    let mut out = dockertools_common::cli::stdout()?;
    let (path, text) = match args.cmd {
        Cmd::ClosureGraph {
            file,
            key,
            max_layers,
        } => {
            let bytes = read(&file)?;
            let paths = popularity_sorter::closure_graph(&bytes, &key).map_err(|source| {
                MainError::Input {
                    path: file.clone(),
                    source,
                }
            })?;
            let text = match max_layers {
                Some(n) => json_pretty(&popularity_sorter::store_layers(&paths, n)),
                None => paths.join("\n") + "\n",
            };
            (file, text)
        }
        Cmd::AutoLayer {
            graph_list,
            ignore_file,
            layer_limit,
        } => {
            let bytes = read(&graph_list)?;
            let ignore = read(&ignore_file)?;
            let text =
                popularity_sorter::auto_layer(&bytes, &ignore, layer_limit).map_err(|source| {
                    MainError::Input {
                        path: graph_list.clone(),
                        source,
                    }
                })?;
            (graph_list, text)
        }
        Cmd::Pipeline { file } => {
            let bytes = read(&file)?;
            let text = popularity_sorter::pipeline(&bytes).map_err(|source| MainError::Input {
                path: file.clone(),
                source,
            })?;
            (file, text)
        }
    };
    let _ = path;
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// jq's pretty form (2-space indent, newline at the end) of a list of lists of strings.
fn json_pretty(v: &serde_json::Value) -> String {
    dockertools_common::pyjson::dumps(
        v,
        dockertools_common::pyjson::Style {
            indent: Some(2),
            ensure_ascii: false,
        },
    ) + "\n"
}

fn main() -> ExitCode {
    dockertools_common::cli::main("popularity-sorter", run)
}
