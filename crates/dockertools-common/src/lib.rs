//! Shared core of dockertools-rs: what two or more tools really share.
//!
//! - [`tar`]: the entry-level tar writer (GNU tar 1.34's `gnu` dialect and Python `tarfile`'s PAX
//!   dialect, every entry's data checked against its size) and a reader with Go `archive/tar` semantics.
//! - [`atomic`]: output files and folders written under a temporary name and renamed into place.
//! - [`cli`]: the `main` wrapper (error printing, exit codes, quiet exit on a closed pipe).
//! - [`hash`]: a writer that counts and SHA-256-hashes what passes through it.
//! - [`names`]: user and group name tables read from `passwd`/`group` files.
//! - [`jq`]: JSON printed the way jq 1.6 (and jansson, for jshon) pretty-prints it, as a serde_json `Formatter`.
//! - [`pyjson`]: JSON written the way CPython's `json.dumps` writes it, as a serde_json `Formatter`.
//! - [`py`]: Python's view of strings: `surrogateescape` code points, their order, `repr()`.
//! - [`compress`]: format detection by magic bytes, the compression flag's value, and in-process (de)compression.
//! - [`deflate`]: the deflate block walk that lets independently compressed gzip blocks join into one member.

pub mod atomic;
pub mod cli;
pub mod compress;
pub mod deflate;
pub mod hash;
pub mod jq;
pub mod names;
pub mod py;
pub mod pyjson;
pub mod tar;
