//! Reports: one [`Summary`](summary::Summary) model, rendered per format (one file each):
//! `summary.json`, `reproduce.txt`, `summary.md`, `junit.xml`, `report.html` (`html.rs`,
//! charts in `charts.rs`); `compare.rs` judges one summary against another.
//!
//! Rendering never changes a verdict; it only shows it. Files land in one folder per run.

pub mod charts;
pub mod compare;
pub mod html;
pub mod junit;
pub mod markdown;
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
/// summary.json, reproduce.txt, summary.md and junit.xml go first: they are what CI relies
/// on, so a page that fails to render must not cost them. The rendering error is still returned, as an I/O error of
/// kind `Other` wrapping the [`html::HtmlError`].
pub fn write_all(dir: &Path, summary: &Summary) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_vec_pretty(summary).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("summary.json"), json)?;
    std::fs::write(
        dir.join("reproduce.txt"),
        format!("{}\n", summary.reproduce),
    )?;
    std::fs::write(dir.join("summary.md"), markdown::render(summary))?;
    let junit = junit::render(summary).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("junit.xml"), junit)?;
    let page = html::render(summary).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("report.html"), page)?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a doorbuster summary: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Reads a run's `summary.json`, given the run folder or the file itself.
pub fn load_summary(path: &Path) -> Result<Summary, LoadError> {
    let file = if path.is_dir() {
        path.join("summary.json")
    } else {
        path.to_path_buf()
    };
    let bytes = std::fs::read(&file).map_err(|source| LoadError::Read {
        path: file.clone(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| LoadError::Parse { path: file, source })
}

/// The JSON Schema of `summary.json` (committed as schemas/summary.schema.json).
pub fn summary_schema() -> String {
    let schema = schemars::schema_for!(Summary);
    // A generated schema always serialises.
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}
