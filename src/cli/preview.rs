//! `doorbuster preview FILE [--count N]`: orders as the scenario sends them.

use doorbuster::exit::Exit;
use doorbuster::orders::template::{self, Preview};
use doorbuster::scenario;

use super::print_warnings;

#[derive(clap::Args)]
pub struct PreviewArgs {
    /// A scenario file, or a bundled scenario's name.
    scenario: String,
    /// How many orders.
    #[arg(long, short = 'n', default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    count: u64,
    /// The first order id.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Overrides the scenario's seed.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// One JSON object per order and line: order, key, headers and the body (parsed when it
    /// is JSON).
    #[arg(long)]
    json: bool,
}

pub fn preview(args: &PreviewArgs) -> Exit {
    let PreviewArgs {
        scenario: arg,
        count,
        from,
        seed,
        json,
    } = args;
    let (count, from, json) = (*count, *from, *json);
    let context = scenario::Context::validate(scenario::Overrides::default());
    let loaded = match scenario::load_with(arg, &context) {
        Ok(loaded) => loaded,
        Err(e) => {
            errln!("{e}");
            print_warnings(&e.origin, &e.warnings);
            return Exit::BadInput;
        }
    };
    print_warnings(arg, &loaded.warnings);
    let orders = &loaded.scenario.orders;
    let seed = seed.unwrap_or(loaded.scenario.seed);
    let previews = match template::preview(orders, seed, from, count) {
        Ok(previews) => previews,
        Err(e) => {
            // Validation rendered sample orders; one of these did not render.
            errln!("{arg}: orders.payload: {e}");
            return Exit::BadInput;
        }
    };
    for p in &previews {
        if json {
            outln!("{}", as_json(p));
        } else {
            outln!("{}", as_text(p));
        }
    }
    Exit::Success
}

/// `# order 3 · key 3 · ce-type: order.created`, then the body as rendered.
fn as_text(p: &Preview) -> String {
    let mut head = format!("# order {}", p.order);
    if let Some(key) = &p.rendered.key {
        head.push_str(&format!(" · key {key}"));
    }
    for (name, value) in &p.rendered.headers {
        head.push_str(&format!(" · {name}: {value}"));
    }
    let body = String::from_utf8_lossy(&p.rendered.body);
    format!("{head}\n{}", body.trim_end())
}

fn as_json(p: &Preview) -> String {
    let body = serde_json::from_slice::<serde_json::Value>(&p.rendered.body).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&p.rendered.body).into_owned())
    });
    let headers: serde_json::Map<String, serde_json::Value> = (p.rendered.headers.iter())
        .map(|(n, v)| (n.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::json!({
        "order": p.order,
        "key": p.rendered.key,
        "headers": headers,
        "body": body,
    })
    .to_string()
}
