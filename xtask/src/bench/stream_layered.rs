//! stream-layered on s1g against GNU tar over the same store (and, with `--reference`, the
//! original Python script).

use anyhow::Result;

use super::{best_of, in_store, sh, Ctx};

/// Adds the stream-layered rows.
pub fn bench(ctx: &mut Ctx) -> Result<()> {
    let s1g = ctx.store("s1g");
    let conf = ctx.conf("s1g").display().to_string();
    let t_tar = best_of(3, || {
        sh(&in_store(
            &s1g,
            "tar -C /nix/store -cf - . | cat > /dev/null",
        ))
    })?;
    ctx.push(
        "GNU tar of the s1g store | cat (floor)",
        t_tar,
        None,
        String::new(),
    );
    let script = in_store(
        &s1g,
        &format!("{} {conf} > /dev/null 2>&1", ctx.tool("stream-layered")),
    );
    let t_sl = ctx.scaled("stream-layered s1g > /dev/null", 3, &script, None)?;
    let mut note = format!("{:.2}x GNU tar's time", t_sl / t_tar);
    if let Some(py) = ctx
        .reference
        .as_ref()
        .map(|d| d.join("stream_layered_image.py"))
    {
        if py.exists() {
            let t_py = best_of(1, || {
                sh(&in_store(
                    &s1g,
                    &format!("python3 {} {conf} > /dev/null 2>&1", py.display()),
                ))
            })?;
            ctx.push(
                "stream_layered_image.py (s1g, reference)",
                t_py,
                None,
                String::new(),
            );
            note.push_str(&format!("; {:.1}x faster than the original", t_py / t_sl));
        }
    }
    ctx.push("stream-layered against the floor", t_sl, None, note);
    Ok(())
}
