//! HdrHistogram interval logs (the V2 log format), one file per stage (and, for a shard,
//! per subscription and for the send lag), one interval per second, flushed as they are
//! written so a killed run still leaves them.
//!
//! The files read back with HdrHistogram's own tools (Java's `HistogramLogProcessor`, the
//! Rust crate's `IntervalLogIterator`): the header is the one Java's `HistogramLogWriter`
//! writes, values are microseconds, timestamps are seconds since the run's start (BaseTime).
//! [`read_back`] is how `doorbuster report` rebuilds a killed run's latency from them.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};

use crate::sync::lock;
use crate::topology::{SUBSCRIPTIONS, Stage};

/// A latency the interval logs may hold: every run logs its stages; a shard also logs each
/// subscription's and the generator's send lag, so that `doorbuster merge` adds every
/// histogram exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logged {
    Stage(Stage),
    /// Publish -> delivery of `topology::SUBSCRIPTIONS[i]`.
    Subscription(usize),
    SendLag,
}

impl From<Stage> for Logged {
    fn from(stage: Stage) -> Logged {
        Logged::Stage(stage)
    }
}

impl Logged {
    /// The stages, then (`all`) the subscriptions and the send lag.
    pub fn every(all: bool) -> Vec<Logged> {
        let mut every: Vec<Logged> = Stage::ALL.iter().map(|&s| Logged::Stage(s)).collect();
        if all {
            every.extend((0..SUBSCRIPTIONS.len()).map(Logged::Subscription));
            every.push(Logged::SendLag);
        }
        every
    }

    fn label(self) -> String {
        match self {
            Logged::Stage(stage) => stage.label().to_owned(),
            Logged::Subscription(i) => SUBSCRIPTIONS.get(i).map_or_else(String::new, |s| s.label()),
            Logged::SendLag => "send lag".to_owned(),
        }
    }
}

/// The file a latency's log goes to, inside the run folder.
pub fn file_name(logged: impl Into<Logged>) -> String {
    let logged = logged.into();
    let slug: String = logged
        .label()
        .replace(" -> ", "-to-")
        .replace(" <- ", "-from-")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    match logged {
        Logged::Stage(_) => format!("latency-{slug}.hlog"),
        Logged::Subscription(_) => format!("delivery-{slug}.hlog"),
        Logged::SendLag => "send-lag.hlog".to_owned(),
    }
}

pub struct IntervalLogs {
    files: Vec<(Logged, PathBuf, Mutex<BufWriter<File>>)>,
    serializer: Mutex<V2DeflateSerializer>,
}

impl IntervalLogs {
    /// Creates one log per stage in `dir` and writes the headers.
    pub fn create(dir: &Path, wall_start_unix_ns: u64) -> io::Result<IntervalLogs> {
        Self::create_for(dir, wall_start_unix_ns, &Logged::every(false))
    }

    /// Creates a log for each of `logged` in `dir` and writes the headers.
    pub fn create_for(
        dir: &Path,
        wall_start_unix_ns: u64,
        logged: &[Logged],
    ) -> io::Result<IntervalLogs> {
        std::fs::create_dir_all(dir)?;
        let start = UNIX_EPOCH + Duration::from_nanos(wall_start_unix_ns);
        let mut serializer = V2DeflateSerializer::new();
        let mut files = Vec::new();
        for &l in logged {
            let path = dir.join(file_name(l));
            let mut out = BufWriter::new(File::create(&path)?);
            writeln!(out, "#[Histogram log format version 1.3]")?;
            IntervalLogWriterBuilder::new()
                .add_comment(&format!("doorbuster latency, {}, microseconds", l.label()))
                .with_start_time(start)
                .with_base_time(start)
                .begin_log_with(&mut out, &mut serializer)?;
            writeln!(
                out,
                "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
            )?;
            out.flush()?;
            files.push((l, path, Mutex::new(out)));
        }
        Ok(IntervalLogs {
            files,
            serializer: Mutex::new(serializer),
        })
    }

    /// Appends the interval `[second, second + 1)` of `logged` and flushes it; nothing when
    /// these logs do not hold it.
    pub fn write(
        &self,
        logged: impl Into<Logged>,
        second: u32,
        interval: &Histogram<u64>,
    ) -> io::Result<()> {
        let logged = logged.into();
        let Some((_, _, file)) = self.files.iter().find(|(l, _, _)| *l == logged) else {
            return Ok(());
        };
        let mut out = lock(file);
        let mut serializer = lock(&self.serializer);
        let mut writer =
            IntervalLogWriterBuilder::new().begin_log_with(&mut *out, &mut *serializer)?;
        writer
            .write_histogram(
                interval,
                Duration::from_secs(u64::from(second)),
                Duration::from_secs(1),
                None,
            )
            .map_err(|e| io::Error::other(e.to_string()))?;
        out.flush()
    }

    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|(_, p, _)| p.as_path())
    }
}

/// One stage's log, read back.
#[derive(Debug, Default)]
pub struct ReadBack {
    /// Each interval's first second of run time and its histogram, in the file's order.
    pub intervals: Vec<(u32, Histogram<u64>)>,
    /// Why reading stopped before the end of the file, if it did: a process killed while
    /// writing can leave its last line cut short, and what came before it still counts.
    pub damaged: Option<String>,
}

/// Reads `logged`'s log in `dir` back with HdrHistogram's own interval-log reader. A missing
/// file is an error; a damaged one gives the intervals before the damage.
pub fn read_back(dir: &Path, logged: impl Into<Logged>) -> io::Result<ReadBack> {
    use base64::Engine as _;
    let path = dir.join(file_name(logged));
    let bytes = std::fs::read(&path)?;
    let mut out = ReadBack::default();
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(&bytes) {
        let interval = match entry {
            Ok(LogEntry::Interval(interval)) => interval,
            Ok(_) => continue,
            Err(e) => {
                out.damaged = Some(format!("{}: unreadable from {e:?}", path.display()));
                break;
            }
        };
        let second = u32::try_from(interval.start_timestamp().as_secs()).unwrap_or(u32::MAX);
        let histogram = base64::engine::general_purpose::STANDARD
            .decode(interval.encoded_histogram())
            .map_err(|e| e.to_string())
            .and_then(|raw| {
                deserializer
                    .deserialize::<u64, _>(&mut io::Cursor::new(raw))
                    .map_err(|e| format!("{e:?}"))
            });
        match histogram {
            Ok(h) => out.intervals.push((second, h)),
            Err(e) => {
                out.damaged = Some(format!(
                    "{}: the interval at second {second} does not decode ({e})",
                    path.display()
                ));
                break;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_read_back_with_hdrhistograms_own_reader() {
        let dir = tempfile::tempdir().unwrap();
        let logs = IntervalLogs::create(dir.path(), 1_700_000_000_000_000_000).unwrap();
        let mut h = crate::observe::recorder::new_histogram();
        for us in [100, 200, 300, 50_000] {
            h.record(us).unwrap();
        }
        logs.write(Stage::Fulfilled, 0, &h).unwrap();
        logs.write(Stage::Fulfilled, 1, &h).unwrap();
        let text = std::fs::read(dir.path().join(file_name(Stage::Fulfilled))).unwrap();
        let mut intervals = Vec::new();
        for entry in IntervalLogIterator::new(&text) {
            if let LogEntry::Interval(i) = entry.expect("a valid log line") {
                intervals.push((i.start_timestamp(), i.encoded_histogram().to_owned()));
            }
        }
        assert_eq!(intervals.len(), 2);
        assert_eq!(intervals[1].0, Duration::from_secs(1));
        let bytes =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &intervals[0].1)
                .unwrap();
        let back: Histogram<u64> = Deserializer::new()
            .deserialize(&mut std::io::Cursor::new(bytes))
            .unwrap();
        assert_eq!(back.len(), 4);
        assert_eq!(back.max(), h.max());
        assert_eq!(
            file_name(Stage::Fulfilled),
            "latency-order-created-to-order-fulfilled.hlog"
        );
    }

    #[test]
    fn read_back_returns_every_interval_and_stops_at_a_line_cut_short() {
        // A killed run can leave half a line: the intervals before it still count.
        let dir = tempfile::tempdir().unwrap();
        let logs = IntervalLogs::create(dir.path(), 1_700_000_000_000_000_000).unwrap();
        let mut h = crate::observe::recorder::new_histogram();
        for us in [100, 200, 300, 50_000] {
            h.record(us).unwrap();
        }
        for second in 0..3 {
            logs.write(Stage::Checkout, second, &h).unwrap();
        }
        let whole = read_back(dir.path(), Stage::Checkout).unwrap();
        assert!(whole.damaged.is_none(), "{:?}", whole.damaged);
        let seconds: Vec<u32> = whole.intervals.iter().map(|(s, _)| *s).collect();
        assert_eq!(seconds, [0, 1, 2]);
        assert_eq!(whole.intervals[2].1, h);

        let path = dir.path().join(file_name(Stage::Checkout));
        let text = std::fs::read(&path).unwrap();
        std::fs::write(&path, &text[..text.len() - 20]).unwrap();
        let cut = read_back(dir.path(), Stage::Checkout).unwrap();
        assert_eq!(cut.intervals.len(), 2);
        assert!(cut.damaged.is_some());
        // A log with its header only has no intervals; no file at all is an error.
        let empty = read_back(dir.path(), Stage::Fulfilled).unwrap();
        assert!(empty.intervals.is_empty() && empty.damaged.is_none());
        let elsewhere = tempfile::tempdir().unwrap();
        assert!(read_back(elsewhere.path(), Stage::Fulfilled).is_err());
    }
}
