//! `junit.xml`: one test case per check, the evidence as the failure message, so CI systems
//! show a doorbuster run like any other test report. A run that was invalid, interrupted or
//! rebuilt incomplete adds a failing `run` case: its checks alone would not tell.

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::summary::{RunVerdict, Summary};
use crate::verify::Verdict;

pub fn render(summary: &Summary) -> Result<String, quick_junit::SerializeError> {
    let mut suite = TestSuite::new(format!("doorbuster.{}", summary.scenario));
    suite.add_property(("seed", summary.seed.to_string().as_str()));
    suite.add_property(("reproduce", summary.reproduce.as_str()));
    suite.add_property(("target", summary.target.kind.as_str()));
    for check in &summary.checks {
        let status = match check.verdict {
            Verdict::Pass => TestCaseStatus::success(),
            verdict => {
                let kind = if verdict == Verdict::Fail {
                    NonSuccessKind::Failure
                } else {
                    NonSuccessKind::Error
                };
                let mut status = TestCaseStatus::non_success(kind);
                status
                    .set_type(format!("{verdict:?}").to_lowercase())
                    .set_message(format!(
                        "observed {}, threshold {}",
                        check.observed, check.threshold
                    ))
                    .set_description(
                        check
                            .evidence
                            .iter()
                            .cloned()
                            .chain(check.remainder_note(check.evidence.len()))
                            .collect::<Vec<_>>()
                            .join("\n"),
                    );
                status
            }
        };
        let mut case = TestCase::new(check.name.clone(), status);
        case.set_classname(format!("doorbuster.{}", summary.scenario));
        case.set_system_out(format!(
            "observed: {}\nthreshold: {}\nreproduce: {}",
            check.observed, check.threshold, summary.reproduce
        ));
        suite.add_test_case(case);
    }
    if matches!(
        summary.verdict,
        RunVerdict::Invalid | RunVerdict::Interrupted | RunVerdict::Incomplete
    ) {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
        status
            .set_type(format!("{:?}", summary.verdict).to_lowercase())
            .set_message(
                summary
                    .invalid_reason
                    .clone()
                    .or_else(|| summary.ended_early())
                    .unwrap_or_else(|| "the run was interrupted before the end".into()),
            );
        let mut case = TestCase::new("run", status);
        case.set_classname(format!("doorbuster.{}", summary.scenario));
        suite.add_test_case(case);
    }
    let mut report = Report::new("doorbuster");
    report.add_test_suite(suite);
    report.to_string()
}
