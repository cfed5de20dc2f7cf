//! Reports: one [`Summary`](summary::Summary) model, rendered per format (one file each):
//! `summary.json`, `reproduce.txt`, `report.html` (`html.rs`, charts in `charts.rs`).
//!
//! Rendering never changes a verdict; it only shows it. Files land in one folder per run.

pub mod charts;
pub mod html;
pub mod progress;
pub mod summary;
pub mod terminal;

use std::path::{Path, PathBuf};

use summary::Summary;

/// `reports/<scenario>-<UTC date-time>-seed<N>`.
pub fn default_run_dir(scenario: &str, seed: u64) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(crate::clock::wall_now()).to_string();
    let stamp: String = stamp
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect::<String>()
        .replace('T', "-");
    PathBuf::from("reports").join(format!("{scenario}-{stamp}-seed{seed}"))
}

/// Writes every report format into `dir`.
///
/// summary.json and reproduce.txt go first: they are what CI relies on, so a page that fails
/// to render must not cost them. The rendering error is still returned, as an I/O error of
/// kind `Other` wrapping the [`html::HtmlError`].
pub fn write_all(dir: &Path, summary: &Summary) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_vec_pretty(summary).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("summary.json"), json)?;
    std::fs::write(
        dir.join("reproduce.txt"),
        format!("{}\n", summary.reproduce),
    )?;
    let page = html::render(summary).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("report.html"), page)?;
    Ok(())
}
