//! `doorbuster compare BASE CANDIDATE`: exit 1 when the candidate regressed.

use std::path::Path;
use std::time::Duration;

use doorbuster::exit::Exit;
use doorbuster::report::compare::{Tolerances, compare as compare_summaries, render};

/// Tolerances given on the command line; each one overrides the candidate scenario's.
pub struct ToleranceFlags {
    pub latency_increase: Option<f64>,
    pub latency_floor: Option<Duration>,
    pub rate_drop: Option<f64>,
    pub gate: Vec<String>,
}

pub fn compare(baseline: &Path, candidate: &Path, flags: ToleranceFlags, force: bool) -> Exit {
    let load = |p: &Path| doorbuster::report::load_summary(p);
    let (base, cand) = match (load(baseline), load(candidate)) {
        (Ok(b), Ok(c)) => (b, c),
        (Err(e), _) | (_, Err(e)) => {
            errln!("compare: {e}");
            return Exit::BadInput;
        }
    };
    // Two different runs' differences are not regressions: say so, and stop unless forced.
    let mut differ = Vec::new();
    if base.scenario != cand.scenario {
        differ.push(format!(
            "scenario {:?} vs {:?}",
            base.scenario, cand.scenario
        ));
    }
    if base.target.kind != cand.target.kind {
        differ.push(format!(
            "target {} vs {}",
            base.target.kind, cand.target.kind
        ));
    }
    if !differ.is_empty() {
        errln!(
            "compare: warning: the runs differ ({}): what differs between them is not a \
             regression",
            differ.join(", ")
        );
        if !force {
            errln!("compare: refused; --force compares them anyway");
            return Exit::BadInput;
        }
    }
    let mut tolerances = Tolerances::from_scenario(&cand.tolerances);
    tolerances.gated = flags.gate;
    if let Some(v) = flags.latency_increase {
        tolerances.latency_increase = v;
    }
    if let Some(v) = flags.latency_floor {
        tolerances.latency_floor = v;
    }
    if let Some(v) = flags.rate_drop {
        tolerances.rate_drop_pp = v;
    }
    let comparison = compare_summaries(&base, &cand, &tolerances);
    outln!("{}", render(&comparison));
    let regressions: Vec<_> = comparison.regressions().collect();
    if regressions.is_empty() {
        outln!("no regression beyond the tolerances");
        Exit::Success
    } else {
        outln!("{} regressions:", regressions.len());
        for r in regressions {
            outln!(
                "  - {}: {} -> {} ({})",
                r.what,
                r.baseline,
                r.candidate,
                r.change
            );
        }
        Exit::Failed
    }
}
