//! `doorbuster scenarios`: the bundled scenarios, one line each.

use doorbuster::exit::Exit;
use doorbuster::scenario;

pub fn scenarios() -> Exit {
    for (name, text) in scenario::bundled() {
        let description = scenario::parse(name, text)
            .map(|s| s.description)
            .unwrap_or_default();
        outln!("{name:<16} {description}");
    }
    Exit::Success
}
