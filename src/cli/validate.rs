//! `doorbuster validate FILE...`: every problem of every file, without running anything.

use doorbuster::exit::Exit;
use doorbuster::scenario;

use super::print_warnings;

pub fn validate(files: &[String], overrides: &scenario::Overrides) -> Exit {
    let context = scenario::Context::validate(overrides.clone());
    let mut bad = false;
    for file in files {
        match scenario::load_with(file, &context) {
            Ok(loaded) => {
                print_warnings(file, &loaded.warnings);
                outln!(
                    "{file}: ok ({} phases, seed {})",
                    loaded.scenario.load.phases.len(),
                    loaded.scenario.seed
                );
            }
            Err(e) => {
                bad = true;
                errln!("{e}");
                print_warnings(&e.origin, &e.warnings);
            }
        }
    }
    if bad { Exit::BadInput } else { Exit::Success }
}
