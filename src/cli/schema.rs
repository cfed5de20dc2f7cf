//! `doorbuster schema`: the JSON Schema of scenario files, or of `summary.json`.

use doorbuster::exit::Exit;

pub fn schema(summary: bool) -> Exit {
    if summary {
        outln!("{}", doorbuster::report::summary_schema());
    } else {
        outln!("{}", doorbuster::scenario::schema::json());
    }
    Exit::Success
}
