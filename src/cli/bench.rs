//! `doorbuster bench`: the highest order rate the pipeline sustains here, or with
//! `--publish-only` the raw publish rate of one transport.

use doorbuster::bench::{BenchOptions, MARKDOWN_HEADER, markdown_row, search};
use doorbuster::exit::Exit;
use doorbuster::scenario::Target;
use tokio::runtime::Runtime;

/// The target `--target` names, or `None` when it is not given; a URL that names no
/// target the harness knows is bad input, said once, here.
pub fn target(url: Option<&str>) -> Result<Option<Target>, Exit> {
    let Some(url) = url else {
        return Ok(None);
    };
    match doorbuster::scenario::target::target_of_url(url) {
        Ok(target) => Ok(Some(target)),
        Err(e) => {
            errln!("error: --target: {}", e.message);
            if let Some(hint) = &e.hint {
                errln!("  hint: {hint}");
            }
            Err(Exit::BadInput)
        }
    }
}

pub fn bench(runtime: &Runtime, options: BenchOptions) -> Exit {
    outln!(
        "provider via {:?}, {} s per trial",
        options.via,
        options.seconds
    );
    outln!("{MARKDOWN_HEADER}");
    let report = runtime.block_on(search(&options, |t| outln!("{}", markdown_row(t))));
    match report {
        Ok(report) => {
            if let Some(doorbuster::capacity::Ceiling::Error { message, exit, .. }) =
                &report.search.ceiling
            {
                errln!("error: {message}");
                return *exit;
            }
            match report.search.sustained() {
                Some(t) => outln!(
                    "highest sustained: {:.0} orders/s (send lag p99 {} us); ledger {} bytes per order",
                    t.planned_peak,
                    t.send_lag_p99_us,
                    report.ledger_bytes_per_order
                ),
                None => outln!("no rate was sustained; lower --start"),
            }
            if let Some(f) = report.search.first_failure() {
                outln!("fails first at {:.0} orders/s: {}", f.planned_peak, f.why);
            }
            Exit::Success
        }
        Err(e) => {
            errln!("error: {e}");
            e.exit()
        }
    }
}

pub fn publish(runtime: &Runtime, target: Option<Target>, clients: usize, seconds: u64) -> Exit {
    let target = target.unwrap_or_else(doorbuster::bench::publish_target);
    let report = runtime.block_on(doorbuster::bench::publish_rate(
        &target,
        clients,
        std::time::Duration::from_secs(seconds),
    ));
    match report {
        Ok(r) => {
            outln!(
                "{}: {:.0} acked publishes/s ({} acked, {} failed in {:.1} s, {} clients, {} B payload, ack latency p50 {} us p99 {} us)",
                r.target,
                r.rate,
                r.acked,
                r.failed,
                r.seconds,
                r.clients,
                r.payload_bytes,
                r.latency_p50_us,
                r.latency_p99_us
            );
            Exit::Success
        }
        Err(e) => {
            errln!("error: {e}");
            Exit::from(&e)
        }
    }
}
