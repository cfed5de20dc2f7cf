//! Faults refused before a run starts, with positions.

#[test]
fn faults_are_validated_with_positions() {
    let bad = |faults: &str| {
        let text = format!(
            "name: x\nload:\n  phases:\n    - {{ hold: 10s, rate: 5/s }}\nfaults:\n{faults}\n"
        );
        doorbuster::scenario::parse("f.yaml", &text)
            .unwrap_err()
            .to_string()
    };
    let e = bad("  - { at: 1s, pause: email }");
    assert!(
        e.contains("faults[0].for: required key missing") || e.contains("faults[0].for"),
        "{e}"
    );
    let e = bad("  - { at: 1s, for: 2s, crash: email }");
    assert!(e.contains("a crash fault takes no `for`"), "{e}");
    let e = bad("  - { at: 1s, crash: emaill }");
    assert!(
        e.contains("faults[0].crash") && e.contains("did you mean \"email\""),
        "{e}"
    );
    let e = bad("  - { at: 1s, crash: email, pause: email }");
    assert!(e.contains("exactly one kind"), "{e}");
    let e = bad("  - { at: 90s, crash: email }");
    assert!(e.contains("but the run ends at"), "{e}");
    let e = bad("  - { at: 1s, for: 1s, latency: email }");
    assert!(e.contains("faults[0].add"), "{e}");
    let e = bad("  - { at: 1s, for: 1s, link: latency }");
    assert!(e.contains("faults[0].delay"), "{e}");
    let e = bad("  - { at: 1s, for: 1s, link: blackhole, delay: 5ms }");
    assert!(e.contains("a blackhole link fault takes no `delay`"), "{e}");
    let e = bad("  - { at: 1s, for: 1s, link: jam }");
    assert!(e.contains("is not a link fault"), "{e}");
    let e = bad("  - { at: 1s, for: 1s, link: reset, keys: 5% }");
    assert!(e.contains("a link fault takes no `keys`"), "{e}");
    let e = bad("  - { at: 1s, poison: email, keys: 5% }");
    assert!(e.contains("faults[0].for"), "{e}");
    let e = bad(
        "  - { at: 1s, for: 4s, errors: email, share: 5% }\n  - { at: 2s, for: 1s, errors: email, share: 50% }",
    );
    assert!(
        e.contains("f.yaml:7:5: faults[1]: this errors fault on email (2s..3s) overlaps faults[0] at line 6 (1s..5s) with a different `share`"),
        "{e}"
    );
    // Identical windows compose, back-to-back ones do not overlap.
    for ok in [
        "  - { at: 1s, for: 4s, errors: email, share: 5% }\n  - { at: 2s, for: 4s, errors: email, share: 5% }",
        "  - { at: 1s, for: 1s, errors: email, share: 5% }\n  - { at: 2s, for: 4s, errors: email, share: 50% }",
    ] {
        let text =
            format!("name: x\nload:\n  phases:\n    - {{ hold: 10s, rate: 5/s }}\nfaults:\n{ok}\n");
        doorbuster::scenario::parse("f.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn a_link_fault_needs_a_networked_broker() {
    // The embedded broker has no TCP link to put the proxy on: validation refuses it at the
    // fault, so `validate` finds it and `run` never starts (tests/fixtures/broken/43-*).
    let text = "name: x\nload:\n  phases:\n    - { hold: 10s, rate: 5/s }\nfaults:\n  - { at: 1s, for: 1s, link: latency, delay: 50ms }\n";
    let err = doorbuster::scenario::parse("f.yaml", text)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("f.yaml:6:30: faults[0].link:"), "{err}");
    assert!(err.contains("--target"), "{err}");
}
