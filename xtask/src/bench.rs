//! `cargo xtask bench`.
use anyhow::Result;
/// Runs the benchmarks.
pub fn main(_args: &[String]) -> Result<()> {
    Ok(())
}
