//! Scenario loading end to end: bundled scenarios and the template parse, a minimal file
//! gets the standard defaults, and every broken file in `tests/fixtures/broken/` produces
//! the exact error a user would read (insta snapshots under `tests/snapshots/`).

// The only line that differs between the scratch crate and doorbuster itself.
use doorbuster as crate_under_test;

use std::time::Duration;

use crate_under_test::scenario::{self, *};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const MINIMAL: &str = "\
name: minimal
load:
  phases:
    - { ramp: 10s, from: 0/s, to: 100/s }
    - { hold: 20s, rate: 100/s }
";

#[test]
fn every_bundled_scenario_parses() {
    // A bundled scenario that does not parse would break `doorbuster run NAME` for everyone.
    // Every file in scenarios/ is bundled, and nothing else is.
    let mut files: Vec<String> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios"))
            .unwrap()
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()?
                    .strip_suffix(".yaml")
                    .map(str::to_owned)
            })
            .collect();
    files.sort();
    let mut names: Vec<String> = scenario::bundled()
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .collect();
    names.sort();
    assert_eq!(names, files);
    for (name, text) in scenario::bundled() {
        let parsed = scenario::parse(name, text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.name, *name);
    }
}

#[test]
fn bundled_scenarios_say_what_the_brief_promises() {
    // The headline numbers of each bundled scenario, which docs and CI rely on.
    let (bf, source) = scenario::load("black-friday").unwrap();
    assert_eq!(source, Source::Bundled("black-friday"));
    assert_eq!(source.run_arg(), "black-friday");
    assert_eq!(bf.seed, 7);
    let load_secs: u64 = bf.load.phases.iter().map(|p| p.duration.as_secs()).sum();
    assert_eq!(load_secs, 105);
    assert_eq!(
        bf.load.phases[2].kind,
        PhaseKind::Spike { rate: Rate(1500.0) }
    );
    assert_eq!(bf.checks.latency.len(), 3);
    assert_eq!(bf.checks.latency[0].stage, Stage::Checkout);

    let (smoke, _) = scenario::load("smoke").unwrap();
    let smoke_secs: u64 = smoke.load.phases.iter().map(|p| p.duration.as_secs()).sum();
    assert_eq!(smoke_secs, 15);
    assert_eq!(smoke.load.drain, Duration::from_secs(15));

    let (dc, _) = scenario::load("double-charge").unwrap();
    assert!(!dc.services.payment.idempotent);
    assert_eq!(dc.orders.resubmits, Share(0.05));
    assert_eq!(dc.provider.via, ProviderVia::InProcess);

    let (po, _) = scenario::load("payment-outage").unwrap();
    let po_secs: u64 = po.load.phases.iter().map(|p| p.duration.as_secs()).sum();
    assert_eq!(po_secs, 60);
    assert_eq!(po.load.checkout_mode, CheckoutMode::Async);
    assert!(matches!(
        po.faults[0].kind,
        FaultKind::ProviderOutage {
            errors: Share(0.3),
            ..
        }
    ));
}

#[test]
fn template_parses_to_the_defaults() {
    // `doorbuster init` must write a file that runs as is, and says the real defaults.
    let text = scenario::template("my-shop");
    let from_template = scenario::parse("my-shop.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
    let minimal = scenario::parse("minimal.yaml", MINIMAL).unwrap();
    assert_eq!(from_template.name, "my-shop");
    assert_eq!(from_template.orders, minimal.orders);
    assert_eq!(from_template.services, minimal.services);
    assert_eq!(from_template.provider, minimal.provider);
    assert_eq!(from_template.target, minimal.target);
    assert_eq!(from_template.load.drain, minimal.load.drain);
    assert_eq!(from_template.load.max_send_lag, minimal.load.max_send_lag);
    assert_eq!(
        from_template.checks.checkout_success_rate,
        minimal.checks.checkout_success_rate
    );
}

#[test]
fn the_templates_faults_example_is_valid_once_uncommented() {
    let text = scenario::template("my-shop");
    assert!(!text.contains("the values below are the defaults"));
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if l.starts_with("# faults:") || l.starts_with("#   - ") => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let s = scenario::parse("my-shop.yaml", &uncommented).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.faults.len(), 3);
}

#[test]
fn minimal_scenario_gets_the_standard_defaults() {
    // A ten-line file describes a whole run; everything else is the standard topology.
    let s = scenario::parse("minimal.yaml", MINIMAL).unwrap();
    assert_eq!(s.description, "");
    assert_eq!(s.seed, 1);
    assert_eq!(
        s.target,
        Target::Embedded(EmbeddedTarget {
            partitions: 12,
            retention: 1_000_000,
            free_committed: false,
        })
    );
    assert_eq!(s.load.arrivals, Arrivals::Poisson);
    assert_eq!(s.load.checkout_timeout, Duration::from_secs(2));
    assert_eq!(s.load.max_in_flight, 10_000);
    assert_eq!(s.load.max_send_lag, ms(100));
    assert_eq!(s.load.drain, Duration::from_secs(30));
    assert_eq!(
        s.load.phases,
        vec![
            Phase {
                kind: PhaseKind::Ramp {
                    from: Rate(0.0),
                    to: Rate(100.0)
                },
                duration: Duration::from_secs(10)
            },
            Phase {
                kind: PhaseKind::Hold { rate: Rate(100.0) },
                duration: Duration::from_secs(20)
            },
        ]
    );
    assert_eq!((s.orders.items_min, s.orders.items_max), (1, 5));
    assert_eq!(s.orders.locale, "en_US");
    assert_eq!(s.orders.catalog.products, 5000);
    assert_eq!(s.orders.catalog.zipf_exponent, 1.1);
    assert_eq!(s.orders.declines, Share(0.02));
    assert_eq!(s.services.payment.replicas, 4);
    assert_eq!(
        s.services.payment.latency,
        LatencyDist::Uniform {
            low: ms(5),
            high: ms(20)
        }
    );
    assert_eq!(s.services.email.latency, LatencyDist::Fixed(ms(30)));
    assert_eq!(s.services.analytics.replicas, 1);
    assert!(s.services.warehouse.idempotent && s.services.warehouse.enabled);
    assert_eq!(s.services.inventory.commit, CommitPolicy::AfterEffect);
    assert_eq!(s.services.inventory.concurrency, 256);
    assert_eq!(s.provider.via, ProviderVia::Http);
    assert_eq!(
        s.provider.latency,
        LatencyDist::LogNormal {
            median: ms(120),
            sigma: 0.4
        }
    );
    assert_eq!(s.provider.retries, 3);
    assert_eq!(
        s.checks.checkout_success_rate.map(|t| t.comparison),
        Some(Comparison::AtLeast)
    );
    assert_eq!(s.checks.settle_within, Duration::from_secs(30));
    assert!(s.checks.latency.is_empty());
    assert!(s.checks.no_loss && s.checks.no_duplicate_effects && s.checks.per_key_order);
}

#[test]
fn overrides_replace_only_what_they_name() {
    // A service override keeps the other defaults of that service; `off` disables a check.
    let text = format!(
        "{MINIMAL}services:\n  payment: {{ replicas: 8, commit: on_receive }}\nchecks:\n  completion_rate: off\n  latency:\n    order.created->email.sent: {{ p99: \"< 5s\", p50: \"< 1s\" }}\n    order.created: {{ max: \"<= 1s\" }}\n"
    );
    let s = scenario::parse("overrides.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.services.payment.replicas, 8);
    assert_eq!(s.services.payment.commit, CommitPolicy::OnReceive);
    assert_eq!(
        s.services.payment.latency,
        LatencyDist::Uniform {
            low: ms(5),
            high: ms(20)
        }
    );
    assert_eq!(s.checks.completion_rate, None);
    // Sorted by stage, then percentile, whatever the file's order.
    let order: Vec<(Stage, f64)> = s
        .checks
        .latency
        .iter()
        .map(|l| (l.stage, l.percentile))
        .collect();
    assert_eq!(
        order,
        vec![
            (Stage::Checkout, 100.0),
            (Stage::EmailSent, 50.0),
            (Stage::EmailSent, 99.0)
        ]
    );
}

#[test]
fn load_tells_files_from_bundled_names() {
    // A path that does not exist but ends in .yaml is a file error, not a bundled lookup.
    let missing = scenario::load("no/such/dir/x.yaml").unwrap_err();
    assert!(
        missing
            .to_string()
            .starts_with("no/such/dir/x.yaml: cannot read the scenario file")
    );
    let unknown = scenario::load("blak-friday").unwrap_err().to_string();
    assert!(
        unknown.contains("did you mean \"black-friday\"?"),
        "{unknown}"
    );
    assert!(
        unknown.contains("black-friday, smoke, double-charge, payment-outage"),
        "{unknown}"
    );

    let dir = std::env::temp_dir().join(format!("doorbuster-scenario-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("minimal.yaml");
    std::fs::write(&path, MINIMAL).unwrap();
    let arg = path.to_str().unwrap();
    let (s, source) = scenario::load(arg).unwrap();
    assert_eq!(s.name, "minimal");
    assert_eq!(source.display_name(), arg);
    assert_eq!(source.run_arg(), arg);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn checkout_mode_defaults_to_async_and_reads_sync() {
    // The synchronous-checkout baseline is opt-in; leaving it out keeps today's behaviour.
    let minimal = scenario::parse("minimal.yaml", MINIMAL).unwrap();
    assert_eq!(minimal.load.checkout_mode, CheckoutMode::Async);
    let sync = MINIMAL.replace("load:\n", "load:\n  checkout: { mode: sync }\n");
    let s = scenario::parse("sync.yaml", &sync).unwrap();
    assert_eq!(s.load.checkout_mode, CheckoutMode::Sync);
    let empty = MINIMAL.replace("load:\n", "load:\n  checkout: {}\n");
    let s = scenario::parse("empty.yaml", &empty).unwrap();
    assert_eq!(s.load.checkout_mode, CheckoutMode::Async);
    let typo = MINIMAL.replace("load:\n", "load:\n  checkout: { mood: sync }\n");
    let e = scenario::parse("typo.yaml", &typo).unwrap_err().to_string();
    assert!(e.contains("typo.yaml:3:") && e.contains("mode"), "{e}");
}

#[test]
fn several_errors_are_all_reported() {
    // One run of the validator reports every semantic mistake, not just the first.
    let text = include_str!("fixtures/broken/26-several-errors.yaml");
    let err = scenario::parse("26-several-errors.yaml", text).unwrap_err();
    assert!(err.problems.len() >= 12, "{err}");
    let lines: Vec<u32> = err.problems.iter().map(|p| p.line).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted, "problems come in file order");
}

#[test]
fn miette_report_renders_every_problem() {
    // The fancy report is optional for the CLI, but must carry each message.
    let text = include_str!("fixtures/broken/04-negative-rate.yaml");
    let err = scenario::parse("04-negative-rate.yaml", text).unwrap_err();
    let report = format!("{:?}", err.to_report(text));
    assert!(report.contains("must be positive"), "{report}");
}

#[test]
fn broken_files_have_readable_errors() {
    // Each broken file is one kind of mistake; its rendered error is reviewed by a human
    // in the snapshot, and must name file, line, column, path, expectation and a hint.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/broken");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 24, "only {} broken files", paths.len());
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        let origin = path.file_name().unwrap().to_str().unwrap();
        let err = scenario::parse(origin, &text)
            .expect_err("a file under fixtures/broken must not parse");
        assert!(!err.problems.is_empty());
        let mut settings = insta::Settings::clone_current();
        settings.set_input_file(&path);
        settings.set_prepend_module_to_snapshot(false);
        let name = format!("broken-{}", origin.trim_end_matches(".yaml"));
        settings.bind(|| insta::assert_snapshot!(name, err.to_string()));
    }
}

mod never_panics {
    use super::crate_under_test::scenario;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn on_arbitrary_text(text in any::<String>()) {
            // Whatever a user feeds in, the answer is a scenario or a list of problems.
            let _ = scenario::parse("fuzz.yaml", &text);
        }

        #[test]
        fn on_a_damaged_bundled_scenario(at in 0usize..2000, byte in 0usize..12) {
            // One character changed in a real file: every problem still points into the file.
            let (_, text) = scenario::bundled()[0];
            let replacement = [" ", "\t", ":", "-", "{", "}", "[", "\"", "0", "x", "\n", "%"][byte];
            let start = text.char_indices().nth(at).map_or(text.len(), |(i, _)| i);
            let end = text[start..].chars().next().map_or(start, |c| start + c.len_utf8());
            let damaged = format!("{}{replacement}{}", &text[..start], &text[end..]);
            if let Err(e) = scenario::parse("damaged.yaml", &damaged) {
                let lines = u32::try_from(damaged.lines().count()).unwrap() + 1;
                prop_assert!(!e.problems.is_empty());
                for p in &e.problems {
                    prop_assert!(p.line <= lines, "{e}");
                }
            }
        }
    }
}

/// A file that validates on its own, for the checks that need the command line or the
/// environment: a checkout endpoint with a credential header, a spike of 1500/s.
const ENDPOINT: &str = "\
name: endpoint
target:
  url: \"http://127.0.0.1:${SHOP_PORT}/checkout\"
  headers:
    Authorization: \"Bearer ${SHOP_TOKEN}\"
load:
  phases:
    - { hold: 10s, rate: 100/s }
    - { spike: 5s, rate: 1500/s }
";

/// The environment a test gives validation: only the variables listed are set.
fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

fn check(
    text: &str,
    overrides: Overrides,
    env: &dyn Fn(&str) -> Option<String>,
    unset: Unset,
) -> Result<(Scenario, Vec<Problem>), ScenarioError> {
    let context = Context {
        overrides,
        env,
        unset,
        files: Files::None,
    };
    scenario::parse_with("endpoint.yaml", text, &context)
}

#[test]
fn an_unset_variable_warns_in_validate_and_refuses_in_run_at_the_same_spot() {
    // `validate` cannot know the run's environment: a warning with the position, and the
    // file validates. `run` is about to connect: the same position, as an error.
    let nothing = env_of(&[]);
    let (_, warnings) = check(ENDPOINT, Overrides::default(), &nothing, Unset::Warning)
        .unwrap_or_else(|e| panic!("{e}"));
    let warned: Vec<String> = warnings
        .iter()
        .map(|w| w.render_warning("endpoint.yaml"))
        .collect();
    let refused = check(ENDPOINT, Overrides::default(), &nothing, Unset::Error).unwrap_err();
    assert_eq!(warned.len(), 2, "{warned:?}");
    assert_eq!(refused.problems.len(), 2, "{refused}");
    for (warning, problem) in warnings.iter().zip(&refused.problems) {
        assert_eq!(
            (warning.line, warning.column, &warning.path),
            (problem.line, problem.column, &problem.path)
        );
    }
    insta::assert_snapshot!(
        "env-unset",
        format!("validate:\n{}\nrun:\n{refused}", warned.join("\n"))
    );
    // Set, they are expanded and the values checked like written ones: the twin is clean.
    let set = env_of(&[("SHOP_PORT", "8080"), ("SHOP_TOKEN", "t0ken")]);
    for unset in [Unset::Warning, Unset::Error] {
        let (_, warnings) =
            check(ENDPOINT, Overrides::default(), &set, unset).unwrap_or_else(|e| panic!("{e}"));
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}

#[test]
fn expanded_values_meet_the_rules_of_written_ones() {
    // What a variable brings is checked where the reference is written, by `validate` as
    // much as by `run` once it is set: a port out of range, a line break in a header value.
    let bad = env_of(&[
        ("SHOP_PORT", "70000"),
        ("SHOP_TOKEN", "t0ken\r\nX-Admin: yes"),
    ]);
    let mut seen = Vec::new();
    for unset in [Unset::Warning, Unset::Error] {
        let e = check(ENDPOINT, Overrides::default(), &bad, unset).unwrap_err();
        seen.push(e.to_string());
    }
    assert_eq!(seen[0], seen[1], "validate and run refuse alike");
    assert!(
        !seen[0].contains("t0ken"),
        "a credential stays out: {}",
        seen[0]
    );
    insta::assert_snapshot!("env-expanded-values", seen[0]);
}

#[test]
fn command_line_overrides_meet_the_files_limits() {
    // `--rate-scale` results are held to the limits of the file's own rates, each named at
    // the phase it breaks; `--target` is checked like a written target; a bad factor is a
    // problem of the flag.
    let set = env_of(&[("SHOP_PORT", "8080"), ("SHOP_TOKEN", "t0ken")]);
    let refused = |overrides: Overrides| {
        check(ENDPOINT, overrides, &set, Unset::Error)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let scale = |factor: f64| Overrides {
        rate_scale: Some(factor),
        ..Overrides::default()
    };
    let too_fast = refused(scale(1000.0));
    let no_orders = refused(scale(0.0001));
    let not_a_factor = refused(scale(0.0));
    let remote = refused(Overrides {
        target: Some("http://10.0.0.5:8080/checkout".to_owned()),
        ..Overrides::default()
    });
    insta::assert_snapshot!(
        "overrides",
        [too_fast, no_orders, not_a_factor, remote].join("\n")
    );
    // The clean twins: a factor within the limits scales every rate; the opt-in lets a
    // remote target validate (nothing connects here).
    let (scaled, _) = check(ENDPOINT, scale(600.0), &set, Unset::Error).unwrap();
    assert_eq!(
        scaled.load.phases[1].kind,
        PhaseKind::Spike {
            rate: Rate(900_000.0)
        }
    );
    // `--hold`: the phases become one hold at their peak (after the scale) for that long.
    let hold = |seconds: u64, factor: Option<f64>| Overrides {
        hold: Some(std::time::Duration::from_secs(seconds)),
        rate_scale: factor,
        ..Overrides::default()
    };
    let (held, _) = check(ENDPOINT, hold(3, Some(2.0)), &set, Unset::Error).unwrap();
    assert_eq!(
        held.load.phases,
        [doorbuster::load::model::Phase {
            kind: PhaseKind::Hold {
                rate: Rate(3_000.0)
            },
            duration: std::time::Duration::from_secs(3),
        }]
    );
    // Its negative controls: a hold that plans more orders than any run may, one longer
    // than a run may last, one that plans none.
    let too_many = refused(hold(23 * 3600, Some(600.0)));
    assert!(
        too_many.contains("with --rate-scale 600 as a 23h --hold at the peak"),
        "{too_many}"
    );
    assert!(refused(hold(25 * 3600, None)).contains("--hold 1day 1h is above the limit of 24h"));
    assert!(refused(hold(0, None)).contains("plan no orders"));
    let remote_allowed = Overrides {
        target: Some("http://10.0.0.5:8080/checkout".to_owned()),
        allow_remote: true,
        ..Overrides::default()
    };
    let (s, _) = check(ENDPOINT, remote_allowed, &set, Unset::Error).unwrap();
    match s.target {
        Target::Http(h) => {
            assert_eq!(h.url, "http://10.0.0.5:8080/checkout");
            assert!(h.allow_remote);
            assert_eq!(h.headers.len(), 1, "the file's headers stay");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_schedule_plans_what_validation_counted() {
    // Validation's order count is the schedule's: a file planning 0.42 orders is refused, and
    // the smallest accepted one plans at least one order with uniform arrivals.
    let one = "name: one\nload:\n  arrivals: uniform\n  phases:\n    - { hold: 1s, rate: 1/s }\n";
    let s = scenario::parse("one.yaml", one).unwrap_or_else(|e| panic!("{e}"));
    let schedule = crate_under_test::load::Schedule::plan(&s.load, s.seed);
    assert_eq!(schedule.orders(), 1);
    let expected: f64 = s.load.phases.iter().map(Phase::expected_orders).sum();
    assert_eq!(schedule.phases[0].expected, expected);
    let under = one.replace("rate: 1/s", "rate: 0.9/s");
    let e = scenario::parse("under.yaml", &under)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the phases plan no orders (0.90 expected)"),
        "{e}"
    );
}

/// Loads a scenario written beside a one-line payload template, as `run` loads files.
fn with_payload(target: &str, payload_extra: &str) -> Result<Scenario, ScenarioError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("order.json.j2"), "{\"id\": {{ order.id }}}").unwrap();
    let text = format!(
        "name: payload\ntarget: {target}\nload:\n  phases:\n    - {{ hold: 2s, rate: 5/s }}\norders:\n  payload:\n    template: order.json.j2\n{payload_extra}"
    );
    let path = dir.path().join("s.yaml");
    std::fs::write(&path, text).unwrap();
    scenario::load_with(
        path.to_str().unwrap(),
        &Context::validate(Overrides::default()),
    )
    .map(|l| l.scenario)
}

#[test]
fn a_payload_template_goes_to_a_checkout_endpoint_only() {
    // Clean twin: a checkout endpoint takes the rendered body and headers.
    let ok = with_payload(
        "http://127.0.0.1:8080/checkout",
        "    headers: { ce-type: order.created }\n",
    )
    .unwrap();
    let payload = ok.orders.payload.expect("the payload is in the model");
    assert_eq!(payload.template.text, "{\"id\": {{ order.id }}}");
    assert_eq!(
        payload.headers,
        [("ce-type".to_owned(), "order.created".to_owned())]
    );
    // A broker's simulated services read doorbuster's own order.created: refused, at the key.
    for target in ["embedded", "redis://127.0.0.1:6379"] {
        let e = with_payload(target, "").unwrap_err().to_string();
        assert!(
            e.contains(":8:5: orders.payload: the orders in your own schema"),
            "{e}"
        );
    }
    // A header name HTTP cannot carry is refused at the name.
    let e = with_payload(
        "http://127.0.0.1:8080/checkout",
        "    headers: { \"ce type\": order.created }\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(":9:16: orders.payload.headers[\"ce type\"]: \"ce type\" is not a header name"),
        "{e}"
    );
    // A checkout endpoint has no message key.
    let e = with_payload(
        "http://127.0.0.1:8080/checkout",
        "    key: \"{{ order.id }}\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("orders.payload.key: a checkout endpoint takes no message key"),
        "{e}"
    );
    // A scenario given as text names no files.
    let e = scenario::parse(
        "text.yaml",
        "name: t\ntarget: http://127.0.0.1:1/c\nload:\n  phases:\n    - { hold: 1s, rate: 1/s }\norders:\n  payload: { template: t.j2 }\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("orders.payload.template: a scenario given as text"),
        "{e}"
    );
}

/// A scenario with an `observe:` block, the given target, and `extra` YAML at the top level.
fn observed(target: &str, observe: &str, extra: &str) -> Result<scenario::Scenario, String> {
    let text = format!(
        "name: shop\ntarget: {target}\nload:\n  phases: [ {{ hold: 5s, rate: 10/s }} ]\n\
         observe:\n{observe}{extra}"
    );
    scenario::parse("shop.yaml", &text).map_err(|e| e.to_string())
}

const OBSERVE: &str = "  orders_to: shop.orders\n  outputs:\n    paid:\n      from: shop.payments\n      order: /orderId\n      expect: { approved: 1 }\n";

#[test]
fn observe_mode_is_checked_like_every_section() {
    // Clean twin: the user's topics, a pointer, an expectation.
    let ok = observed("redis://127.0.0.1:6379", OBSERVE, "").unwrap();
    let observe = ok.observe.expect("observe is in the model");
    assert_eq!(observe.outputs[0].expect.approved, 1);
    assert_eq!(observe.outputs[0].expect.declined, 0);
    let scenario::model::Target::Broker(b) = &ok.target else {
        panic!("{:?}", ok.target);
    };
    assert_eq!(b.orders_to.as_deref(), Some("shop.orders"));

    let cases: [(&str, &str, &str, &str); 9] = [
        // Nothing outside doorbuster can read the embedded broker.
        (
            "embedded",
            OBSERVE,
            "",
            ":6:3: observe: observe taps your own shop on your broker",
        ),
        // The orders need the user's topic.
        (
            "redis://127.0.0.1:6379",
            &OBSERVE.replace("  orders_to: shop.orders\n", ""),
            "",
            "observe on a broker needs `orders_to`",
        ),
        // A locator is a pointer, a header or the key.
        (
            "redis://127.0.0.1:6379",
            &OBSERVE.replace("/orderId", "orderId"),
            "",
            ":10:14: observe.outputs.paid.order: \"orderId\" is not a place in an event",
        ),
        // `each` is every class.
        (
            "redis://127.0.0.1:6379",
            &OBSERVE.replace("{ approved: 1 }", "{ each: 1, approved: 1 }"),
            "",
            "observe.outputs.paid.expect.each: `each` is every order",
        ),
        // What to expect is not guessed.
        (
            "redis://127.0.0.1:6379",
            &OBSERVE.replace("      expect: { approved: 1 }\n", ""),
            "",
            "observe.outputs.paid.expect: this required key is missing",
        ),
        // The user's services run, not doorbuster's.
        (
            "redis://127.0.0.1:6379",
            OBSERVE,
            "services:\n  email: { enabled: false }\n",
            ":13:3: services: observe mode runs none of doorbuster's simulated services",
        ),
        // A fault on doorbuster's own services has nothing to act on.
        (
            "redis://127.0.0.1:6379",
            OBSERVE,
            "faults:\n  - { at: 1s, crash: payment }\n",
            "faults[0].crash: a crash fault acts on doorbuster's simulated services",
        ),
        // An outage reaches the user's payment service only through `provider.listen`.
        (
            "redis://127.0.0.1:6379",
            OBSERVE,
            "faults:\n  - { at: 1s, for: 2s, provider_outage: { errors: 50% } }\n",
            "`provider.listen` is not set",
        ),
        // The provider serves on loopback only.
        (
            "redis://127.0.0.1:6379",
            OBSERVE,
            "provider: { listen: 10.0.0.5:12111 }\n",
            "provider.listen: 10.0.0.5:12111 is not a loopback address",
        ),
    ];
    for (target, observe, extra, expected) in cases {
        let e = observed(target, observe, extra).unwrap_err();
        assert!(e.contains(expected), "expected {expected:?} in:\n{e}");
    }
    // Behind a checkout endpoint the taps read the broker the shop writes to.
    let http = "http://127.0.0.1:8080/checkout";
    let behind = OBSERVE.replace("orders_to: shop.orders", "broker: redis://127.0.0.1:6379");
    let ok = observed(http, &behind, "").unwrap();
    assert!(ok.observe.unwrap().broker.is_some());
    for (observe, expected) in [
        (OBSERVE.to_owned(), "name the broker your shop writes to"),
        (
            OBSERVE.replace("orders_to: shop.orders", "broker: http://127.0.0.1:9/x"),
            "observe.broker: \"http://127.0.0.1:9/x\" is not a broker URL",
        ),
        (
            OBSERVE.replace("orders_to: shop.orders", "broker: redis://10.1.2.3:6379"),
            "observe.broker",
        ),
    ] {
        let e = observed(http, &observe, "").unwrap_err();
        assert!(e.contains(expected), "expected {expected:?} in:\n{e}");
    }

    // A link fault in observe mode acts on one of the user's links, named with `on`.
    let links = "  links:\n    shop-redis: { listen: 127.0.0.1:16379, to: 127.0.0.1:6379 }\n";
    let with_links = format!("{OBSERVE}{links}");
    let fault = |on: &str| format!("faults:\n  - {{ at: 1s, for: 2s, link: reset{on} }}\n");
    let ok = observed(
        "redis://127.0.0.1:6379",
        &with_links,
        &fault(", on: shop-redis"),
    )
    .unwrap();
    assert_eq!(ok.observe.unwrap().links[0].listen.port(), 16379);
    for (observe, on, expected) in [
        (with_links.as_str(), "", "name it with `on`"),
        (
            with_links.as_str(),
            ", on: shop-db",
            "`on: shop-db` names no link of `observe.links`",
        ),
        (OBSERVE, ", on: shop-redis", "add `observe.links"),
    ] {
        let e = observed("redis://127.0.0.1:6379", observe, &fault(on)).unwrap_err();
        assert!(e.contains(expected), "expected {expected:?} in:\n{e}");
    }
    let e = scenario::parse(
        "s.yaml",
        "name: s\ntarget: redis://127.0.0.1:6379\nload:\n  phases: [ { hold: 5s, rate: 10/s } ]\n\
         faults:\n  - { at: 1s, for: 2s, link: reset, on: shop-redis }\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("the scenario has no `observe:` block"), "{e}");

    // With the provider where the user's service calls it, the outage is on the timeline.
    let ok = observed(
        "redis://127.0.0.1:6379",
        OBSERVE,
        "provider: { listen: 127.0.0.1:12111 }\nfaults:\n  - { at: 1s, for: 2s, provider_outage: { lost_answers: 5% } }\n",
    )
    .unwrap();
    assert_eq!(ok.provider.listen, Some("127.0.0.1:12111".parse().unwrap()));
}

#[test]
fn the_example_shops_scenarios_validate_with_their_template() {
    for file in ["redis.yaml", "nats.yaml"] {
        let path = format!("{}/examples/shop/{file}", env!("CARGO_MANIFEST_DIR"));
        let context = scenario::Context::run(Default::default());
        let loaded = scenario::load_with(&path, &context).unwrap_or_else(|e| panic!("{e}"));
        let observe = loaded.scenario.observe.expect("observe mode");
        assert_eq!(observe.outputs.len(), 4);
        assert!(loaded.scenario.orders.payload.is_some());
    }
}

#[test]
fn rabbitmq_observe_names_are_an_exchange_and_maybe_a_routing_key() {
    let amqp = "amqp://127.0.0.1:5672/%2f";
    // Clean twin: an exchange, and an exchange with a routing key.
    let keyed = OBSERVE.replace("from: shop.payments", "from: shop:order.paid");
    let ok = observed(amqp, &keyed, "").unwrap();
    assert_eq!(ok.observe.unwrap().outputs[0].from, "shop:order.paid");
    for (observe, expected) in [
        (
            OBSERVE.replace("orders_to: shop.orders", "orders_to: \":orders\""),
            ":6:14: observe.orders_to: \":orders\" names no exchange before the `:`",
        ),
        (
            OBSERVE.replace("from: shop.payments", "from: \"shop.payments:\""),
            "observe.outputs.paid.from: \"shop.payments:\" has a `:` and no routing key",
        ),
    ] {
        let e = observed(amqp, &observe, "").unwrap_err();
        assert!(e.contains(expected), "expected {expected:?} in:\n{e}");
        assert!(e.contains("shop.events:order.paid"), "the hint: {e}");
        // The same names are no problem on a broker without this syntax.
        assert!(observed("redis://127.0.0.1:6379", &observe, "").is_ok());
    }
}
