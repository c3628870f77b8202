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
    let err = |source| MainError::Read {
        path: path.to_path_buf(),
        source,
    };
    if path != Path::new("-") {
        if let Some(bytes) = read_in_parts(path).map_err(err)? {
            return Ok(bytes);
        }
    }
    dockertools_common::cli::read_input(path).map_err(err)
}

/// Below this size a file is read in one piece.
const MIN_PARTS_READ: u64 = 4 << 20;

/// A large regular file read in parts on all cores: most of the cost of reading a file from
/// the page cache is the kernel's copy into fresh memory and the page faults of that memory,
/// and both spread over the cores. `None` when the file is small, not a regular file, or
/// changes size while it is read (then it is read again the ordinary way).
fn read_in_parts(path: &Path) -> io::Result<Option<Vec<u8>>> {
    use rayon::prelude::*;
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    let threads = rayon::current_num_threads();
    if !meta.is_file() || meta.len() < MIN_PARTS_READ || threads < 2 {
        return Ok(None);
    }
    let Ok(len) = usize::try_from(meta.len()) else {
        return Ok(None);
    };
    let mut buf = vec![0u8; len];
    let part = len.div_ceil(threads * 4);
    let complete = buf
        .par_chunks_mut(part)
        .enumerate()
        .map(
            |(k, chunk)| match file.read_exact_at(chunk, (k * part) as u64) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
                Err(e) => Err(e),
            },
        )
        .collect::<io::Result<Vec<bool>>>()?;
    let grew = file.read_at(&mut [0u8], len as u64)? != 0;
    Ok((complete.iter().all(|&c| c) && !grew).then_some(buf))
}

/// auto-layer's node list read straight from a regular file, a window at a time (see
/// `popularity_sorter::listed`); `None` for stdin, other kinds of file, and input not in the
/// plain shape Nix writes, which are read whole and parsed the general way.
fn read_listed(path: &Path) -> Result<Option<popularity_sorter::listed::Listed>, MainError> {
    if path == Path::new("-") {
        return Ok(None);
    }
    let err = |source| MainError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(err)?;
    let meta = file.metadata().map_err(err)?;
    if !meta.is_file() {
        return Ok(None);
    }
    popularity_sorter::listed::read(&file, meta.len()).map_err(err)
}

/// Names the input file a library error came from.
fn in_file(path: &Path) -> impl FnOnce(Error) -> MainError + '_ {
    move |source| MainError::Input {
        path: path.to_path_buf(),
        source,
    }
}

fn run(args: Args) -> Result<(), MainError> {
    let mut out = dockertools_common::cli::stdout()?;
    let text = match args.cmd {
        Cmd::ClosureGraph {
            file,
            key,
            max_layers,
        } => popularity_sorter::closure_graph_text(&read(&file)?, &key, max_layers)
            .map_err(in_file(&file))?,
        Cmd::AutoLayer {
            graph_list,
            ignore_file,
            layer_limit,
        } => {
            let listed = read_listed(&graph_list)?;
            let bytes = match listed {
                Some(_) => Vec::new(),
                None => read(&graph_list)?,
            };
            let ignore = read(&ignore_file)?;
            if let Some(l) = listed {
                // Printed straight to stdout, not into memory first.
                popularity_sorter::auto_layer_listed(&l, &ignore, layer_limit)
                    .map_err(in_file(&graph_list))?
                    .write_to(&mut out)?;
                out.flush()?;
                return Ok(());
            }
            popularity_sorter::auto_layer(&bytes, &ignore, layer_limit)
                .map_err(in_file(&graph_list))?
        }
        Cmd::Pipeline { file } => {
            popularity_sorter::pipeline(&read(&file)?).map_err(in_file(&file))?
        }
    };
    out.write_all(&text)?;
    out.flush()?;
    Ok(())
}

fn main() -> ExitCode {
    dockertools_common::cli::main("popularity-sorter", run)
}
