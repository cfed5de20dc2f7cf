//! The scenarios shipped inside the binary, so `doorbuster run black-friday` works from any
//! directory. The YAML lives in `scenarios/` at the top of the package, where users read
//! and copy it; this file only embeds it. Each one must parse (tested in `tests/scenario.rs`).

/// (name, YAML) of every bundled scenario; the name is what `doorbuster run` accepts.
pub fn bundled() -> &'static [(&'static str, &'static str)] {
    const BUNDLED: [(&str, &str); 10] = [
        (
            "black-friday",
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scenarios/black-friday.yaml"
            )),
        ),
        (
            "smoke",
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/smoke.yaml")),
        ),
        (
            "double-charge",
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scenarios/double-charge.yaml"
            )),
        ),
        (
            "payment-outage",
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scenarios/payment-outage.yaml"
            )),
        ),
        (
            "subscriber-crash",
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scenarios/subscriber-crash.yaml"
            )),
        ),
        (
            "slow-warehouse",
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scenarios/slow-warehouse.yaml"
            )),
        ),
        (
            "duplicate-storm",
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scenarios/duplicate-storm.yaml"
            )),
        ),
        (
            "poison-order",
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scenarios/poison-order.yaml"
            )),
        ),
        (
            "replay-analytics",
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scenarios/replay-analytics.yaml"
            )),
        ),
        (
            "soak",
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/soak.yaml")),
        ),
    ];
    &BUNDLED
}
