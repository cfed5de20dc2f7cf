//! Reports: one [`Summary`](summary::Summary) model, rendered per format (one file each):
//! `summary.json`, `reproduce.txt`, `summary.md`, `junit.xml`, `report.html` (`html.rs`,
//! charts in `charts.rs`); `compare.rs` judges one summary against another; `partial.rs`
//! writes `run.json` at t=0 and rebuilds a killed run's partial summary from it.
//!
//! Rendering never changes a verdict; it only shows it. Files land in one folder per run.

pub mod charts;
pub mod compare;
pub mod html;
pub mod junit;
pub mod markdown;
pub mod metrics;
pub mod partial;
pub mod progress;
pub mod summary;
pub mod terminal;

use std::path::{Path, PathBuf};

use summary::Summary;

/// The columns a table printed on stdout may take: the terminal's width, or 120 when stdout
/// is a file or a CI log.
pub fn table_width() -> u16 {
    terminal_size::terminal_size_of(std::io::stdout()).map_or(120, |(w, _)| w.0.max(40))
}

/// A run time in milliseconds as people read it: `25.0 s` (`850 ms` under a second).
pub fn fmt_ms(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

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
    // Whole or absent: a run killed while writing it must leave no summary.json, so that
    // `doorbuster report` rebuilds one instead of failing on half a file.
    write_whole(&dir.join("summary.json"), &json)?;
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

/// Writes `path` through a temporary file beside it and a rename, so that a reader (or a
/// process killed meanwhile) sees the old file, no file, or the whole new one.
fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".partial");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
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
    #[error(
        "{0} is not a run folder: it has neither summary.json (a finished or interrupted run) \
         nor run.json (written when a run's load starts)"
    )]
    NotARun(PathBuf),
    #[error(transparent)]
    Rebuild(#[from] partial::RebuildError),
}

/// A run's summary for `doorbuster report`: its `summary.json` when there is one; for a run
/// killed before writing it, a partial summary rebuilt from `run.json` and the interval logs
/// (verdict `incomplete`). `path` is the run folder or its summary.json.
pub fn load_or_rebuild(path: &Path) -> Result<Summary, LoadError> {
    let (dir, file) = if path.is_dir() {
        (path.to_path_buf(), path.join("summary.json"))
    } else {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        (dir, path.to_path_buf())
    };
    // Only an absent summary is rebuilt: an unreadable one is reported, never overwritten.
    if file.exists() {
        return load_summary(&file);
    }
    if dir.join(partial::RUN_RECORD).exists() {
        return Ok(partial::rebuild(&dir)?);
    }
    Err(LoadError::NotARun(if path.is_dir() {
        dir
    } else {
        path.to_path_buf()
    }))
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
