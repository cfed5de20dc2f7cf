//! What the proxy counts: connections, bytes each way, bytes dropped, resets.
//!
//! Counters are relaxed atomics bumped by the pumps; a `ProxyStats` is a snapshot of them.
//! Figures read while traffic flows are each exact but not a consistent cut across fields.

use std::sync::atomic::{AtomicU64, Ordering};

use super::spec::Flow;

/// A snapshot of the proxy's counters since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize)]
pub struct ProxyStats {
    pub connections_accepted: u64,
    /// Connections open now (zero once the proxy has stopped).
    pub connections_active: u64,
    /// Bytes written to the upstream server (client to server).
    pub bytes_upstream: u64,
    /// Bytes written back to clients (server to client).
    pub bytes_downstream: u64,
    /// Bytes read and discarded by blackhole toxics.
    pub bytes_dropped: u64,
    /// Connections reset by a reset toxic (existing ones and new ones refused).
    pub resets: u64,
    /// Connections closed because the upstream could not be reached.
    pub upstream_failures: u64,
}

impl std::fmt::Display for ProxyStats {
    /// "3 connections (0 open), 1.2 kB to the upstream, 48.0 kB back, 0 B dropped, 0 resets,
    /// 0 upstream failures": what a person reads when the proxy stops.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural =
            |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        write!(
            f,
            "{} ({} open), {} to the upstream, {} back, {} dropped, {}, {}",
            plural(self.connections_accepted, "connection", "connections"),
            self.connections_active,
            bytes(self.bytes_upstream),
            bytes(self.bytes_downstream),
            bytes(self.bytes_dropped),
            plural(self.resets, "reset", "resets"),
            plural(
                self.upstream_failures,
                "upstream failure",
                "upstream failures"
            ),
        )
    }
}

/// `512 B`, `1.2 kB`, `3.4 MB` (decimal units, as `ls -h --si`).
fn bytes(n: u64) -> String {
    match n {
        0..1_000 => format!("{n} B"),
        1_000..1_000_000 => format!("{:.1} kB", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        _ => format!("{:.1} GB", n as f64 / 1e9),
    }
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub connections_accepted: AtomicU64,
    pub connections_active: AtomicU64,
    pub bytes_upstream: AtomicU64,
    pub bytes_downstream: AtomicU64,
    pub bytes_dropped: AtomicU64,
    pub resets: AtomicU64,
    pub upstream_failures: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    pub fn forwarded(&self, flow: Flow, bytes: usize) {
        let counter = match flow {
            Flow::Upstream => &self.bytes_upstream,
            Flow::Downstream => &self.bytes_downstream,
        };
        Counters::bump(counter, u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    pub fn dropped(&self, bytes: usize) {
        Counters::bump(
            &self.bytes_dropped,
            u64::try_from(bytes).unwrap_or(u64::MAX),
        );
    }

    pub fn snapshot(&self) -> ProxyStats {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ProxyStats {
            connections_accepted: read(&self.connections_accepted),
            connections_active: read(&self.connections_active),
            bytes_upstream: read(&self.bytes_upstream),
            bytes_downstream: read(&self.bytes_downstream),
            bytes_dropped: read(&self.bytes_dropped),
            resets: read(&self.resets),
            upstream_failures: read(&self.upstream_failures),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_reads_as_words() {
        let stats = ProxyStats {
            connections_accepted: 3,
            connections_active: 0,
            bytes_upstream: 1_234,
            bytes_downstream: 48_000,
            bytes_dropped: 0,
            resets: 1,
            upstream_failures: 0,
        };
        assert_eq!(
            stats.to_string(),
            "3 connections (0 open), 1.2 kB to the upstream, 48.0 kB back, 0 B dropped, \
             1 reset, 0 upstream failures"
        );
    }
}
