//! `doorbuster report DIR`: re-render a run's reports from its `summary.json`, or rebuild a
//! killed run's partial report from what it left on disk.

use std::path::Path;

use anyhow::Context;
use doorbuster::exit::{Exit, RunVerdict};
use doorbuster::report::terminal::{closing_lines, verdict_table};

pub fn report(run_dir: &Path) -> anyhow::Result<Exit> {
    let summary = match doorbuster::report::load_or_rebuild(run_dir) {
        Ok(s) => s,
        Err(e) => {
            errln!("report: {e}");
            return Ok(Exit::BadInput);
        }
    };
    let dir = if run_dir.is_dir() {
        run_dir.to_path_buf()
    } else {
        run_dir.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    doorbuster::report::write_all(&dir, &summary)
        .with_context(|| format!("cannot write the reports to {}", dir.display()))?;
    if summary.verdict != RunVerdict::Incomplete {
        outln!("re-rendered the reports in {}", dir.display());
        return Ok(Exit::Success);
    }
    outln!("{}", verdict_table(&summary));
    out!("{}", closing_lines(&summary));
    outln!("report: {}", dir.join("report.html").display());
    outln!("summary: {}", dir.join("summary.json").display());
    let exit = Exit::of_run(summary.verdict, summary.interrupted_by);
    // Said on stderr too, where a script that keeps only stdout's data still shows it.
    errln!(
        "report: the run in {} was killed before it finished; this report is PARTIAL (exit {})",
        dir.display(),
        exit.code()
    );
    Ok(exit)
}
