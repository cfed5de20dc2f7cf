//! `doorbuster proxy`: the TCP fault proxy alone, between a client and a loopback server,
//! until Ctrl-C. As in toxiproxy, each toxic acts in one direction, downstream (server to
//! client) unless told otherwise.

use std::net::SocketAddr;
use std::time::Duration;

use doorbuster::chaos::proxy::{Direction, LinkToxic, ToxicSpec, run_standalone};
use doorbuster::exit::Exit;
use doorbuster::scenario::model::Share;
use tokio::runtime::Runtime;

#[derive(clap::Args)]
pub struct ProxyArgs {
    /// Where clients connect (loopback only).
    #[arg(long)]
    listen: SocketAddr,
    /// The server to forward to (loopback unless --allow-remote).
    #[arg(long)]
    upstream: SocketAddr,
    /// Added delay per chunk.
    #[arg(long, value_parser = humantime::parse_duration)]
    latency: Option<Duration>,
    /// Uniform jitter around --latency.
    #[arg(long, value_parser = humantime::parse_duration)]
    jitter: Option<Duration>,
    /// Bytes per second, per connection and direction.
    #[arg(long, value_name = "BYTES_PER_SEC")]
    bandwidth: Option<u64>,
    /// Swallow traffic (a partition).
    #[arg(long)]
    blackhole: bool,
    /// Reset connections.
    #[arg(long)]
    reset: bool,
    /// Which way the toxics above act: downstream is server to client (responses), as
    /// toxiproxy's default.
    #[arg(long, value_enum, default_value_t = Way::Downstream)]
    direction: Way,
    /// Share of connections the toxics above apply to, e.g. 50%.
    #[arg(long, default_value = "100%", value_parser = super::parse_share)]
    share: f64,
    /// One more toxic with its own direction and share (repeatable): latency=200ms[,jitter=20ms],
    /// bandwidth=BYTES_PER_SEC, reset or blackhole, then ,direction=upstream|downstream|both
    /// (downstream when left out) and ,share=50%.
    #[arg(long, value_name = "TOXIC", value_parser = parse_toxic)]
    toxic: Vec<ToxicSpec>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Allow an upstream outside loopback.
    #[arg(long)]
    allow_remote: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Way {
    Upstream,
    Downstream,
    Both,
}

impl From<Way> for Direction {
    fn from(way: Way) -> Direction {
        match way {
            Way::Upstream => Direction::Upstream,
            Way::Downstream => Direction::Downstream,
            Way::Both => Direction::Both,
        }
    }
}

impl ProxyArgs {
    /// The toxics of the shorthand flags (with --direction and --share), then the --toxic ones.
    fn toxics(&self) -> Vec<ToxicSpec> {
        let mut toxics = Vec::new();
        if self.latency.is_some() || self.jitter.is_some() {
            toxics.push(LinkToxic::Latency {
                latency: self.latency.unwrap_or_default(),
                jitter: self.jitter.unwrap_or_default(),
            });
        }
        if let Some(bytes_per_sec) = self.bandwidth {
            toxics.push(LinkToxic::Bandwidth { bytes_per_sec });
        }
        if self.blackhole {
            toxics.push(LinkToxic::Blackhole);
        }
        if self.reset {
            toxics.push(LinkToxic::Reset);
        }
        toxics
            .into_iter()
            .map(|t| {
                ToxicSpec::new(t)
                    .direction(self.direction.into())
                    .share(Share(self.share.min(1.0)))
            })
            .chain(self.toxic.iter().cloned())
            .collect()
    }
}

/// `latency=200ms,jitter=20ms,direction=upstream,share=50%` and the like.
fn parse_toxic(text: &str) -> Result<ToxicSpec, String> {
    let mut parts = text.split(',').map(str::trim);
    let first = parts.next().unwrap_or_default();
    let (kind, value) = match first.split_once('=') {
        Some((k, v)) => (k.trim(), Some(v.trim())),
        None => (first, None),
    };
    let duration = |what: &str, v: Option<&str>| -> Result<Duration, String> {
        let v = v.ok_or(format!("{what} takes a duration, e.g. {what}=200ms"))?;
        humantime::parse_duration(v).map_err(|e| format!("{what}={v}: {e}"))
    };
    let mut toxic = match (kind, value) {
        ("latency", v) => LinkToxic::Latency {
            latency: duration("latency", v)?,
            jitter: Duration::ZERO,
        },
        ("bandwidth", Some(v)) => LinkToxic::Bandwidth {
            bytes_per_sec: v
                .parse()
                .map_err(|_| format!("bandwidth={v}: bytes per second, a whole number"))?,
        },
        ("bandwidth", None) => {
            return Err("bandwidth takes bytes per second, e.g. bandwidth=65536".into());
        }
        ("reset", None) => LinkToxic::Reset,
        ("blackhole", None) => LinkToxic::Blackhole,
        ("reset" | "blackhole", Some(_)) => return Err(format!("{kind} takes no value")),
        _ => {
            return Err(format!(
                "unknown toxic {kind:?}; toxics are {}",
                LinkToxic::KINDS.join(", ")
            ));
        }
    };
    let mut spec_direction = Direction::Downstream;
    let mut share = Share(1.0);
    for part in parts {
        let (key, v) = part
            .split_once('=')
            .ok_or(format!("{part:?}: write key=value after the toxic"))?;
        match (key.trim(), &mut toxic) {
            ("jitter", LinkToxic::Latency { jitter, .. }) => *jitter = duration("jitter", Some(v))?,
            ("direction", _) => {
                spec_direction = match v.trim() {
                    "upstream" => Direction::Upstream,
                    "downstream" => Direction::Downstream,
                    "both" => Direction::Both,
                    other => {
                        return Err(format!("direction={other}: upstream, downstream or both"));
                    }
                }
            }
            ("share", _) => share = Share(super::parse_share(v)?.min(1.0)),
            (key, _) => {
                return Err(format!(
                    "{key:?} does not apply to {kind}; direction and share do, and jitter to latency"
                ));
            }
        }
    }
    let spec = ToxicSpec::new(toxic).direction(spec_direction).share(share);
    match spec.problem() {
        Some(problem) => Err(problem),
        None => Ok(spec),
    }
}

pub fn proxy(runtime: &Runtime, args: ProxyArgs) -> Exit {
    let toxics = args.toxics();
    let upstream = args.upstream;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    // Told only once it listens: a refused address or toxic is the only line printed.
    let ready = |listen: SocketAddr| {
        errln!("proxying {listen} -> {upstream}; Ctrl-C stops");
    };
    match runtime.block_on(run_standalone(
        args.listen,
        upstream,
        toxics,
        args.seed,
        args.allow_remote,
        shutdown,
        ready,
    )) {
        Ok(stats) => {
            outln!("proxy stopped: {stats}");
            Exit::Success
        }
        Err(e) => {
            errln!("proxy: {e}");
            Exit::from(&e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toxic_takes_its_own_direction_and_downstream_by_default() {
        let lag = parse_toxic("latency=200ms,jitter=20ms").unwrap();
        assert_eq!(
            lag,
            ToxicSpec::new(LinkToxic::Latency {
                latency: Duration::from_millis(200),
                jitter: Duration::from_millis(20),
            })
            .direction(Direction::Downstream)
        );
        let up = parse_toxic("bandwidth=1024, direction=upstream, share=50%").unwrap();
        assert_eq!(up.direction, Direction::Upstream);
        assert_eq!(up.share, Share(0.5));
        assert_eq!(parse_toxic("reset").unwrap().toxic, LinkToxic::Reset);
    }

    #[test]
    fn a_bad_toxic_says_what_is_expected() {
        for (text, says) in [
            ("latncy=1s", "unknown toxic \"latncy\""),
            ("latency", "latency takes a duration"),
            ("bandwidth=fast", "a whole number"),
            ("bandwidth=0", "must be positive"),
            ("reset=1", "takes no value"),
            ("blackhole,jitter=1s", "does not apply to blackhole"),
            (
                "latency=1s,direction=sideways",
                "upstream, downstream or both",
            ),
            ("latency=1s,share=half", "10%"),
        ] {
            let e = parse_toxic(text).expect_err(text);
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
