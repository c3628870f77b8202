//! `cargo xtask demo`.
use anyhow::Result;
/// Builds the demo image.
pub fn main(_args: &[String]) -> Result<()> {
    Ok(())
}
