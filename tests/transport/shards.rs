//! One run split over three processes against a real Redis, merged, and held to a single
//! process's run of the same seed: the same orders, the same ground truth, the same verdicts,
//! and latency percentiles equal to those of one histogram holding every shard's samples.
//! The merge refuses a run with a shard missing, interrupted or from another run (exit 3).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

use super::brokers_required;

/// Smoke's checks at 200 orders/s for 4 s, on Redis, with 5 % of checkouts resubmitted (the
/// shopper's double click: a second `order.created` under the same idempotency key), so that
/// dozens of orders' two events are handled by two shards' services, which must then share
/// their idempotency stores and the provider's key records (on the broker) to charge, email
/// and ship once, as one process does.
const SCENARIO: &str = "\
name: shards
description: three shards against one process
seed: 1
target: redis://127.0.0.1:6379
load:
  max_send_lag: 500ms
  phases:
    - { hold: 4s, rate: 200/s }
  drain: 15s
orders:
  resubmits: 5%
provider:
  via: http
  latency: 5ms..20ms
checks:
  checkout_success_rate: \">= 99.5%\"
  completion_rate: \">= 99%\"
  latency:
    order.created -> order.fulfilled: { p99: \"< 3s\" }
    order.created:                    { p99: \"< 1s\" }
  no_loss: true
  no_duplicate_effects: true
  # Not seen across shards on Redis: asked for below, where the merge says Unknown.
  per_key_order: false
";

fn doorbuster(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_doorbuster"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args(args);
    cmd
}

/// `doorbuster merge` of `dirs` into `out`, with `flags`.
fn merge(dirs: &[PathBuf], out: &Path, flags: &[&str]) -> Output {
    let mut cmd = doorbuster(&["merge"]);
    cmd.args(flags).args(dirs).arg("--out").arg(out);
    cmd.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn summary(dir: &Path) -> serde_json::Value {
    let raw = std::fs::read(dir.join("summary.json")).expect("summary.json written");
    serde_json::from_slice(&raw).expect("summary.json is JSON")
}

/// Keys on the Redis server matching `pattern` (an inline `KEYS`: test data only).
fn redis_keys(pattern: &str) -> usize {
    use std::io::{BufRead, Write};
    let mut conn = std::net::TcpStream::connect("127.0.0.1:6379").unwrap();
    conn.write_all(format!("KEYS {pattern}\r\n").as_bytes())
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(conn).read_line(&mut line).unwrap();
    line.trim().trim_start_matches('*').parse().unwrap()
}

fn redis_up() -> bool {
    std::net::TcpStream::connect("127.0.0.1:6379").is_ok()
}

/// Every interval of every shard's log `file`, in one histogram.
fn all_samples(dirs: &[PathBuf], file: &str) -> Histogram<u64> {
    use base64::Engine as _;
    let mut all = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
    for dir in dirs {
        let log = std::fs::read(dir.join(file)).unwrap();
        for entry in IntervalLogIterator::new(&log) {
            if let Ok(LogEntry::Interval(i)) = entry {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(i.encoded_histogram())
                    .unwrap();
                let h: Histogram<u64> = Deserializer::new()
                    .deserialize(&mut std::io::Cursor::new(raw))
                    .unwrap();
                all.add(&h).unwrap();
            }
        }
    }
    all
}

fn verdicts(s: &serde_json::Value) -> Vec<(String, String)> {
    s["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].to_string(), c["verdict"].to_string()))
        .collect()
}

/// A copy of shard folder `from` with one field of its state changed.
fn altered(from: &Path, to: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    let path = to.join("shard.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut state);
    std::fs::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();
}

/// One process's run of `scenario` (seed 7) and three shards' of the same (run id
/// `shards-<pid>-<tag>`), into `tmp`.
struct Split<R> {
    single: PathBuf,
    dirs: Vec<PathBuf>,
    run_id: String,
    /// `doorbuster run` of the scenario into a folder, for more.
    run: R,
}

fn split(scenario: &str, tmp: &Path, tag: &str) -> Split<impl Fn(&Path) -> Command> {
    let file = tmp.join("shards.yaml");
    std::fs::write(&file, scenario).unwrap();
    let run = move |out: &Path| {
        let mut cmd = doorbuster(&["run", file.to_str().unwrap(), "--quiet", "--seed", "7"]);
        cmd.args(["--out", out.to_str().unwrap()]);
        cmd
    };
    let single = tmp.join("single");
    let out = run(&single).output().unwrap();
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out));

    // The three shards start together, a few seconds from now, as pods of one Job would.
    let run_id = format!("shards-{}-{tag}", std::process::id());
    let start_at = humantime::format_rfc3339(
        doorbuster::clock::wall_now() + std::time::Duration::from_secs(5),
    )
    .to_string();
    let dirs: Vec<PathBuf> = (0..3).map(|i| tmp.join(format!("shard-{i}"))).collect();
    let shards: Vec<_> = (0..3)
        .map(|i| {
            run(&dirs[i])
                .args(["--shard", &format!("{i}/3"), "--run-id", &run_id])
                .args(["--start-at", &start_at])
                .spawn()
                .unwrap()
        })
        .collect();
    for shard in shards {
        let out = shard.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "a shard exits 0 once its state is written: {}",
            text(&out)
        );
    }
    Split {
        single,
        dirs,
        run_id,
        run,
    }
}

#[test]
fn three_shards_merge_into_the_run_one_process_makes() {
    if !redis_up() {
        assert!(
            !brokers_required(),
            "Redis is not running on 127.0.0.1:6379"
        );
        eprintln!(
            "SKIP: shards: Redis is not running (DOORBUSTER_REQUIRE_BROKERS=1 fails instead)"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Split {
        single,
        dirs,
        run_id,
        run,
    } = split(SCENARIO, tmp.path(), "clean");
    // Each shard made its third of the orders and judged nothing.
    let (one, mut attempted) = (summary(&single), 0);
    assert_eq!(one["verdict"], "pass", "{one}");
    let whole = one["orders"]["attempted"].as_u64().unwrap();
    assert!(whole > 700, "{whole}");
    for dir in &dirs {
        let s = summary(dir);
        let mine = s["orders"]["attempted"].as_u64().unwrap();
        assert!(mine.abs_diff(whole / 3) <= 1, "{mine} of {whole}");
        attempted += mine;
        assert!(verdicts(&s).iter().all(|(_, v)| v == "\"unknown\""), "{s}");
        assert!(s["start"]["offset_ms"].as_f64().unwrap().abs() < 500.0);
    }

    // The shards leave their run's streams for each other; the merge deletes them.
    let streams = format!("doorbuster-{run_id}*");
    assert!(
        redis_keys(&streams) > 0,
        "the shards' streams are on the broker"
    );
    assert!(
        redis_keys(&format!("doorbuster-{run_id}:state:*")) > 0,
        "the shards' services keep their idempotency claims on the broker"
    );
    let merged = tmp.path().join("merged");
    let out = merge(&dirs, &merged, &["--delete-streams"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("deleted the streams of run"),
        "{}",
        text(&out)
    );
    assert_eq!(redis_keys(&streams), 0, "deleted by merge --delete-streams");
    let all = summary(&merged);
    assert_eq!(attempted, whole);
    for count in [
        "planned",
        "attempted",
        "accepted",
        "failed",
        "completed",
        "fulfilled",
        "declined",
        "payment_failed",
        "resubmits",
    ] {
        assert_eq!(all["orders"][count], one["orders"][count], "orders.{count}");
    }
    assert_eq!(verdicts(&all), verdicts(&one));
    assert_eq!(all["verdict"], one["verdict"]);
    // A resubmitted order's second charge is a replay of its first, whichever shard made
    // either: one capture per paid order, as in one process.
    assert_eq!(all["provider"]["captures"], one["provider"]["captures"]);
    assert_eq!(all["provider"]["replays"], one["provider"]["replays"]);
    assert!(one["provider"]["replays"].as_u64() > Some(10), "{one}");
    assert_eq!(all["provider"]["declines"], one["provider"]["declines"]);
    assert_eq!(
        all["rates"]["planned_per_second"],
        one["rates"]["planned_per_second"]
    );
    // The merged percentiles are those of one histogram holding every shard's samples: two
    // stages, a subscription's delivery, the generator's send lag.
    let stage = |label: &str| {
        all["latency"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["stage"] == label)
            .unwrap_or_else(|| panic!("{label} in {all}"))
            .clone()
    };
    let subscription = all["deliveries"]["per_subscription"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["subscription"] == "payment <- order.created")
        .expect("payment's subscription")["latency"]
        .clone();
    for (file, p) in [
        ("latency-order-created.hlog", stage("order.created")),
        (
            "latency-order-created-to-order-fulfilled.hlog",
            stage("order.created -> order.fulfilled"),
        ),
        ("delivery-payment-from-order-created.hlog", subscription),
        ("send-lag.hlog", all["send_lag"].clone()),
    ] {
        let h = all_samples(&dirs, file);
        assert_eq!(p["count"].as_u64(), Some(h.len()), "{file}");
        assert!(h.len() > 700, "{file}: {}", h.len());
        for (key, q) in [
            ("p50_us", 0.5),
            ("p90_us", 0.9),
            ("p99_us", 0.99),
            ("p999_us", 0.999),
        ] {
            assert_eq!(
                p[key].as_u64(),
                Some(h.value_at_quantile(q)),
                "{file} {key}"
            );
        }
        assert_eq!(p["max_us"].as_u64(), Some(h.max()), "{file} max");
    }

    // The merge judges what the shards saw: a shard whose provider kept no captures leaves
    // fulfilled orders that were never charged, and the merged run fails on them.
    let uncharged = tmp.path().join("uncharged");
    altered(&dirs[1], &uncharged, |s| {
        s["captures"] = serde_json::json!([])
    });
    // The merge of `dirs` exits `code` and says `why`.
    let merge_says = |dirs: &[PathBuf], code: i32, why: &str| {
        let out = merge(dirs, &tmp.path().join("merged-control"), &[]);
        assert_eq!(out.status.code(), Some(code), "{}", text(&out));
        assert!(text(&out).contains(why), "{why}: {}", text(&out));
    };
    let refused = |dirs: &[PathBuf], why: &str| merge_says(dirs, 3, why);
    merge_says(
        &[dirs[0].clone(), uncharged, dirs[2].clone()],
        1,
        "fulfilled without a capture",
    );

    // Per-key order is not seen across shards on Redis (any member takes any event): a
    // merged run that asks for it says Unknown, never Pass.
    let ordered: Vec<PathBuf> = (0..3)
        .map(|i| {
            let to = tmp.path().join(format!("ordered-{i}"));
            altered(&dirs[i], &to, |s| {
                s["scenario"]["checks"]["per_key_order"] = true.into()
            });
            to
        })
        .collect();
    let out = merge(&ordered, &tmp.path().join("merged-ordered"), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let ordered = summary(&tmp.path().join("merged-ordered"));
    let per_key = verdicts(&ordered);
    assert!(
        per_key.contains(&("\"per_key_order\"".into(), "\"unknown\"".into())),
        "{per_key:?}"
    );

    // Shards agree on one start: without --start-at a shard does not run, and shards of
    // two different instants do not merge.
    let out = run(&tmp.path().join("unsynced"))
        .args(["--shard", "0/3", "--run-id", &run_id])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("--shard needs --start-at"),
        "{}",
        text(&out)
    );
    let elsewhen = tmp.path().join("elsewhen");
    altered(&dirs[1], &elsewhen, |s| {
        s["start"]["agreed"] = "2026-01-01T00:00:00.000000Z".into()
    });
    refused(
        &[dirs[0].clone(), elsewhen, dirs[2].clone()],
        "start at one --start-at instant",
    );

    // The merged folder is not a shard's.
    let out = merge(&dirs, &dirs[0], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("is the shard folder"), "{}", text(&out));

    // Negative controls: a shard missing, one from another run, one interrupted, one whose
    // ledger was copied half-way.
    refused(&dirs[..2], "missing: 2/3");
    let cut = tmp.path().join("cut-ledger");
    altered(&dirs[2], &cut, |_| {});
    let ledger = std::fs::OpenOptions::new()
        .write(true)
        .open(cut.join("ledger.bin"))
        .unwrap();
    let len = ledger.metadata().unwrap().len();
    assert!(len > 48 * 100, "a ledger of {len} bytes");
    ledger.set_len(len - 48).unwrap();
    refused(&[dirs[0].clone(), dirs[1].clone(), cut], "not whole");
    let other = tmp.path().join("other-run");
    altered(&dirs[2], &other, |s| {
        s["sharding"]["run_id"] = "another".into()
    });
    refused(&[dirs[0].clone(), dirs[1].clone(), other], "not of run");
    let stopped = tmp.path().join("stopped");
    altered(&dirs[2], &stopped, |s| {
        s["interrupted"] = true.into();
        s["interrupted_by"] = "SIGTERM".into();
    });
    refused(
        &[dirs[0].clone(), dirs[1].clone(), stopped],
        "interrupted by SIGTERM",
    );

    // A shard that started later than max_send_lag (500 ms) after the agreed instant makes
    // the merged run invalid.
    let late = tmp.path().join("late");
    altered(&dirs[0], &late, |s| s["start"]["offset_ms"] = 900.0.into());
    refused(
        &[late, dirs[1].clone(), dirs[2].clone()],
        "after the agreed --start-at instant",
    );
}

/// The negative control: a payment service without idempotency charges a resubmitted order
/// twice, under a fresh key per delivery, in one process as across shards (whose fresh keys
/// never meet in the shared books), and the merged run fails on the double charges exactly
/// as the single run does.
#[test]
fn shards_judge_a_double_charge_as_one_process_does() {
    if !redis_up() {
        assert!(
            !brokers_required(),
            "Redis is not running on 127.0.0.1:6379"
        );
        return;
    }
    let scenario = format!("{SCENARIO}services:\n  payment: {{ idempotent: false }}\n");
    let tmp = tempfile::tempdir().unwrap();
    let Split { single, dirs, .. } = split(&scenario, tmp.path(), "charged-twice");
    let one = summary(&single);
    assert_eq!(one["verdict"], "fail", "{one}");
    let merged = tmp.path().join("merged");
    let out = merge(&dirs, &merged, &["--delete-streams"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = summary(&merged);
    assert_eq!(verdicts(&all), verdicts(&one));
    assert_eq!(all["provider"]["captures"], one["provider"]["captures"]);
    let duplicates = |s: &serde_json::Value| {
        s["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "no_duplicate_effects")
            .map(|c| c["verdict"].clone())
    };
    assert_eq!(duplicates(&all), Some("fail".into()), "{all}");
}
