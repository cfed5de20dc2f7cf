//! Human unit parsers: the text of one YAML scalar (`90s`, `500/s`, `2.5%`, `5ms..20ms`,
//! `">= 99.5%"`) to a typed value of the validated model.
//!
//! This sits between `raw.rs` (which keeps every scalar as text with its position) and
//! `validate.rs` (which knows the field path and the context-dependent limits, such as
//! "a hold rate must be positive"). Parsers here are pure, never panic on any input, and
//! report what they expected, the offending value, and an example in the hint; they know
//! nothing about positions or paths.

use std::time::Duration;

// ---- The unit types of the validated model -----------------------------------------

/// Arrivals per second. Always finite and non-negative once validated.
#[derive(Debug, Clone, Copy, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Rate(pub f64);

impl Rate {
    pub fn per_sec(self) -> f64 {
        self.0
    }
}

/// A share between 0 and 1 (written `2.5%` in YAML).
#[derive(Debug, Clone, Copy, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Share(pub f64);

impl Share {
    pub const ZERO: Share = Share(0.0);
    pub fn fraction(self) -> f64 {
        self.0
    }
}

/// A processing-time or response-time distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(tag = "dist", rename_all = "snake_case")]
pub enum LatencyDist {
    /// `5ms`
    Fixed(Duration),
    /// `5ms..20ms`
    Uniform { low: Duration, high: Duration },
    /// `normal(10ms, 2ms)`: mean, standard deviation; clamped at zero.
    Normal { mean: Duration, std_dev: Duration },
    /// `lognormal(120ms, 0.4)`: median and sigma of the underlying normal.
    LogNormal { median: Duration, sigma: f64 },
}

impl LatencyDist {
    pub const ZERO: LatencyDist = LatencyDist::Fixed(Duration::ZERO);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    AtLeast,
    AtMost,
    LessThan,
    GreaterThan,
}

/// `">= 99.5%"`
#[derive(Debug, Clone, Copy, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct ShareThreshold {
    pub comparison: Comparison,
    pub share: Share,
}

// ---- Parsers ---------------------------------------------------------------------

/// Why one scalar could not be read. `validate.rs` adds the position and the field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitError {
    pub message: String,
    pub hint: Option<String>,
}

impl UnitError {
    pub(crate) fn new(message: impl Into<String>, hint: Option<&str>) -> UnitError {
        UnitError {
            message: message.into(),
            hint: hint.map(str::to_owned),
        }
    }
}

pub const DURATION_HINT: &str = r#"write a duration like "90s", "2m", "1m30s" or "250ms""#;
pub const RATE_HINT: &str = r#"write a rate like "200/s", "30000/m" or "100/h""#;
pub const SHARE_HINT: &str = r#"write a share like "2.5%""#;
pub const LATENCY_HINT: &str =
    r#"write a latency like "5ms", "5ms..20ms", "normal(10ms, 2ms)" or "lognormal(120ms, 0.4)""#;
pub const THRESHOLD_HINT: &str = r#"write a threshold like ">= 99.5%""#;
pub const BOUND_HINT: &str = r#"write a bound like "< 3s" or "<= 250ms""#;
pub const ITEMS_HINT: &str = r#"write items like "1..5" or "3""#;
pub const POPULARITY_HINT: &str = r#"write "zipf(1.1)" or "uniform""#;

/// The largest rate a scenario may ask for; a limit on everything, and far beyond what
/// one generator sustains (40k/s measured), so a typo like `5000000/s` is caught here.
pub const RATE_MAX_PER_SEC: f64 = 1_000_000.0;
/// The most line items per order: the catalog and the fake-order generator assume small carts.
pub const ITEMS_MAX: u32 = 50;
/// A latency above this is a typo (`2M` is two months in humantime), not a simulation.
/// The longest a single phase, a drain or the whole load may last. Runs are meant to be
/// minutes; a day means a typo such as `2M` (two months in humantime).
pub const DURATION_MAX: Duration = Duration::from_secs(24 * 3600);
pub const LATENCY_MAX: Duration = Duration::from_secs(3600);
pub const SIGMA_MAX: f64 = 3.0;
pub const ZIPF_MAX: f64 = 5.0;

/// Quotes a user value for a message, so `"-5/s"` reads as the thing they typed.
pub fn quoted(text: &str) -> String {
    format!("{text:?}")
}

/// Parses a plain decimal number (`500`, `2.5`, `30_000`), rejecting NaN and infinities.
/// `f64::from_str` also accepts `inf` and `NaN`, which are never what a user meant.
fn number(text: &str) -> Option<f64> {
    let cleaned: String = text.trim().chars().filter(|c| *c != '_').collect();
    let looks_numeric = !cleaned.is_empty()
        && cleaned
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'));
    if !looks_numeric {
        return None;
    }
    cleaned.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// A whole number such as `7`, `10000` or `1_000_000`.
pub fn parse_integer(text: &str) -> Result<u64, UnitError> {
    let cleaned: String = text.trim().chars().filter(|c| *c != '_').collect();
    if cleaned.starts_with('-') && cleaned[1..].chars().all(|c| c.is_ascii_digit()) {
        return Err(UnitError::new(
            format!("{} must not be negative", quoted(text)),
            None,
        ));
    }
    if cleaned.is_empty() || !cleaned.chars().all(|c| c.is_ascii_digit()) {
        return Err(UnitError::new(
            format!("expected a whole number, found {}", quoted(text)),
            Some("write digits only, like 4"),
        ));
    }
    cleaned.parse::<u64>().map_err(|_| {
        UnitError::new(
            format!("{} is too large for a whole number", quoted(text)),
            None,
        )
    })
}

/// `true` or `false`. YAML 1.1 spellings (`yes`, `on`) are refused on purpose: they are the
/// classic YAML trap, and a scenario should read the same to every tool.
pub fn parse_bool(text: &str) -> Result<bool, UnitError> {
    match text.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => {
            let yaml11 = [
                "yes", "no", "on", "off", "y", "n", "True", "False", "TRUE", "FALSE",
            ];
            Err(UnitError::new(
                format!("expected true or false, found {}", quoted(text)),
                yaml11
                    .contains(&other)
                    .then_some("write exactly true or false; YAML 1.1 spellings such as yes/no are not accepted"),
            ))
        }
    }
}

/// A human duration via humantime: `90s`, `2m`, `1m30s`, `250ms`, `1.5h`.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(UnitError::new(
            "expected a duration, found nothing",
            Some(DURATION_HINT),
        ));
    }
    if trimmed.starts_with('-') {
        return Err(UnitError::new(
            format!("{} must not be negative", quoted(text)),
            Some(DURATION_HINT),
        ));
    }
    if number(trimmed).is_some() {
        return Err(UnitError::new(
            format!("{} has no unit", quoted(text)),
            Some(&format!(
                r#"write a duration with a unit, like "{trimmed}s""#
            )),
        ));
    }
    humantime::parse_duration(trimmed).map_err(|e| {
        let reason = match e {
            humantime::DurationError::UnknownUnit { unit, .. } if unit.is_empty() => {
                "a number needs a unit".to_owned()
            }
            humantime::DurationError::UnknownUnit { unit, .. } => {
                format!("unknown unit {}", quoted(&unit))
            }
            humantime::DurationError::NumberOverflow => "the number is too large".to_owned(),
            _ => "expected a number followed by a unit".to_owned(),
        };
        UnitError::new(
            format!("{} is not a duration: {reason}", quoted(text)),
            Some(DURATION_HINT),
        )
    })
}

/// A rate such as `500/s`, `30000/m` or `100/h`; finite, not negative, at most 1M/s.
pub fn parse_rate(text: &str) -> Result<Rate, UnitError> {
    let bad = |why: &str| {
        UnitError::new(
            format!("{} is not a rate: {why}", quoted(text)),
            Some(RATE_HINT),
        )
    };
    let trimmed = text.trim();
    let Some((count, unit)) = trimmed.split_once('/') else {
        if number(trimmed).is_some() {
            return Err(UnitError::new(
                format!("{} has no time unit", quoted(text)),
                Some(&format!(r#"write a rate with a unit, like "{trimmed}/s""#)),
            ));
        }
        return Err(bad("expected a number, a slash and s, m or h"));
    };
    let per_sec_factor = match unit.trim() {
        "s" => 1.0,
        "m" => 1.0 / 60.0,
        "h" => 1.0 / 3600.0,
        _ => {
            return Err(bad(&format!(
                "unknown unit {}, expected s, m or h",
                quoted(unit.trim())
            )));
        }
    };
    let Some(count) = number(count) else {
        return Err(bad("expected a number before the slash"));
    };
    if count < 0.0 {
        return Err(UnitError::new(
            format!("{} must not be negative", quoted(text)),
            Some(RATE_HINT),
        ));
    }
    let per_sec = count * per_sec_factor;
    if per_sec > RATE_MAX_PER_SEC {
        return Err(UnitError::new(
            format!("{} is above the limit of 1000000/s", quoted(text)),
            None,
        ));
    }
    Ok(Rate(per_sec))
}

/// A rate that must be above zero (hold and spike phases).
pub fn parse_positive_rate(text: &str) -> Result<Rate, UnitError> {
    let positive = || {
        UnitError::new(
            format!("{} must be positive", quoted(text)),
            Some(r#"write a rate like "200/s""#),
        )
    };
    match parse_rate(text) {
        Ok(rate) if rate.0 > 0.0 => Ok(rate),
        Ok(_) => Err(positive()),
        // A negative rate gets the same message as zero: both ask for "positive".
        Err(_) if number(text.split('/').next().unwrap_or("")).is_some_and(|n| n < 0.0) => {
            Err(positive())
        }
        Err(e) => Err(e),
    }
}

/// A share such as `2.5%` (0..=100%), as a fraction. A bare number is refused because
/// `0.5` could mean half or half a percent.
pub fn parse_share(text: &str) -> Result<Share, UnitError> {
    let trimmed = text.trim();
    let Some(percent) = trimmed.strip_suffix('%') else {
        if number(trimmed).is_some() {
            // No guess at what was meant: `0.02` may be a fraction or a percentage.
            return Err(UnitError::new(
                format!(
                    "{} is a bare number; a share needs a percent sign",
                    quoted(text)
                ),
                Some(SHARE_HINT),
            ));
        }
        return Err(UnitError::new(
            format!("{} is not a share", quoted(text)),
            Some(SHARE_HINT),
        ));
    };
    let Some(value) = number(percent) else {
        return Err(UnitError::new(
            format!(
                "{} is not a share: expected a number before %",
                quoted(text)
            ),
            Some(SHARE_HINT),
        ));
    };
    if !(0.0..=100.0).contains(&value) {
        return Err(UnitError::new(
            format!("{} must be between 0% and 100%", quoted(text)),
            Some(SHARE_HINT),
        ));
    }
    Ok(Share(value / 100.0))
}

/// A leading comparison operator and the rest, longest operator first.
fn split_comparison(text: &str) -> (Option<Comparison>, &str) {
    let trimmed = text.trim();
    for (op, cmp) in [
        (">=", Comparison::AtLeast),
        ("<=", Comparison::AtMost),
        (">", Comparison::GreaterThan),
        ("<", Comparison::LessThan),
    ] {
        if let Some(rest) = trimmed.strip_prefix(op) {
            return (Some(cmp), rest.trim());
        }
    }
    (None, trimmed)
}

/// `">= 99.5%"`, `"> 99%"`, `"<= 1%"`, `"< 1%"`; a bare `99.5%` means at least.
pub fn parse_share_threshold(text: &str) -> Result<ShareThreshold, UnitError> {
    let (comparison, rest) = split_comparison(text);
    let share = parse_share(rest).map_err(|_| {
        let out_of_range = rest
            .strip_suffix('%')
            .and_then(number)
            .is_some_and(|n| !(0.0..=100.0).contains(&n));
        let why = if out_of_range {
            "the share must be between 0% and 100%"
        } else {
            "expected >=, >, <= or < and a share with a percent sign"
        };
        UnitError::new(
            format!("{} is not a threshold: {why}", quoted(text)),
            Some(THRESHOLD_HINT),
        )
    })?;
    Ok(ShareThreshold {
        comparison: comparison.unwrap_or(Comparison::AtLeast),
        share,
    })
}

/// `"< 3s"` or `"<= 250ms"`: an upper bound on a latency; a bare `3s` means at most.
pub fn parse_latency_bound(text: &str) -> Result<(Comparison, Duration), UnitError> {
    let (comparison, rest) = split_comparison(text);
    let comparison = match comparison {
        None => Comparison::AtMost,
        Some(c @ (Comparison::LessThan | Comparison::AtMost)) => c,
        Some(_) => {
            return Err(UnitError::new(
                format!(
                    "{} is a lower bound; a latency objective is an upper bound (< or <=)",
                    quoted(text)
                ),
                Some(BOUND_HINT),
            ));
        }
    };
    let bound = parse_duration(rest).map_err(|_| {
        UnitError::new(
            format!(
                "{} is not a latency bound: expected < or <= and a duration",
                quoted(text)
            ),
            Some(BOUND_HINT),
        )
    })?;
    if bound.is_zero() {
        return Err(UnitError::new(
            format!(
                "{} can never be met: the bound must be above 0s",
                quoted(text)
            ),
            Some(BOUND_HINT),
        ));
    }
    Ok((comparison, bound))
}

/// A duration inside a latency distribution, with the distribution's limit.
fn latency_part(part: &str, whole: &str) -> Result<Duration, UnitError> {
    let d = parse_duration(part).map_err(|e| UnitError {
        message: format!("{} is not a latency: {}", quoted(whole), e.message),
        hint: Some(LATENCY_HINT.to_owned()),
    })?;
    if d > LATENCY_MAX {
        return Err(UnitError::new(
            format!("{} is above the limit of 1h", quoted(whole)),
            Some(LATENCY_HINT),
        ));
    }
    Ok(d)
}

/// `5ms`, `5ms..20ms`, `normal(10ms, 2ms)` or `lognormal(120ms, 0.4)`.
pub fn parse_latency(text: &str) -> Result<LatencyDist, UnitError> {
    let trimmed = text.trim();
    if let Some((name, args)) = trimmed.split_once('(') {
        let bad = |why: &str| {
            UnitError::new(
                format!("{} is not a latency distribution: {why}", quoted(text)),
                Some(LATENCY_HINT),
            )
        };
        let Some(args) = args.trim_end().strip_suffix(')') else {
            return Err(bad("missing closing parenthesis"));
        };
        let Some((first, second)) = args.split_once(',') else {
            return Err(bad("expected two arguments separated by a comma"));
        };
        return match name.trim() {
            "normal" => Ok(LatencyDist::Normal {
                mean: latency_part(first, text)?,
                std_dev: latency_part(second, text)?,
            }),
            "lognormal" => {
                let median = latency_part(first, text)?;
                if median.is_zero() {
                    return Err(bad("the median must be above 0s"));
                }
                let Some(sigma) = number(second) else {
                    return Err(bad("sigma must be a plain number such as 0.4"));
                };
                if !(sigma > 0.0 && sigma <= SIGMA_MAX) {
                    return Err(bad("sigma must be above 0 and at most 3"));
                }
                Ok(LatencyDist::LogNormal { median, sigma })
            }
            other => Err(bad(&format!(
                "unknown distribution {}, expected normal or lognormal",
                quoted(other.trim())
            ))),
        };
    }
    if let Some((low, high)) = trimmed.split_once("..") {
        let low = latency_part(low, text)?;
        let high = latency_part(high, text)?;
        if low > high {
            return Err(UnitError::new(
                format!(
                    "{} is an empty range: the low end is above the high end",
                    quoted(text)
                ),
                Some(&format!(
                    r#"write the smaller value first, like "{}..{}""#,
                    humantime::format_duration(high),
                    humantime::format_duration(low)
                )),
            ));
        }
        return Ok(LatencyDist::Uniform { low, high });
    }
    latency_part(trimmed, text).map(LatencyDist::Fixed)
}

/// Line items per order: `1..5` or `3`, with 1 <= min <= max <= 50.
pub fn parse_items(text: &str) -> Result<(u32, u32), UnitError> {
    let trimmed = text.trim();
    let (min, max) = trimmed.split_once("..").unwrap_or((trimmed, trimmed));
    let as_count = |part: &str| {
        parse_integer(part)
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                UnitError::new(
                    format!("{} is not an item count or range", quoted(text)),
                    Some(ITEMS_HINT),
                )
            })
    };
    let (min, max) = (as_count(min)?, as_count(max)?);
    if min == 0 || max > ITEMS_MAX {
        return Err(UnitError::new(
            format!("{} must stay within 1..50 items per order", quoted(text)),
            Some(ITEMS_HINT),
        ));
    }
    if min > max {
        return Err(UnitError::new(
            format!("{} is an empty range: {min} is above {max}", quoted(text)),
            Some(&format!(
                r#"write the smaller number first, like "{max}..{min}""#
            )),
        ));
    }
    Ok((min, max))
}

/// Product popularity: `zipf(1.1)` (exponent above 0, at most 5) or `uniform` (exponent 0).
pub fn parse_popularity(text: &str) -> Result<f64, UnitError> {
    let trimmed = text.trim();
    if trimmed == "uniform" {
        return Ok(0.0);
    }
    let exponent = trimmed
        .strip_prefix("zipf(")
        .and_then(|rest| rest.strip_suffix(')'))
        .and_then(number);
    match exponent {
        Some(s) if s > 0.0 && s <= ZIPF_MAX => Ok(s),
        Some(_) => Err(UnitError::new(
            format!(
                "{} must have an exponent above 0 and at most 5",
                quoted(text)
            ),
            Some(POPULARITY_HINT),
        )),
        None => Err(UnitError::new(
            format!("{} is not a popularity", quoted(text)),
            Some(POPULARITY_HINT),
        )),
    }
}

/// A percentile key of a latency objective: `p50`, `p90`, `p95`, `p99`, `p99.9`, `p99.99`,
/// or `max` (100). Kept to the values HdrHistogram reports resolve well.
pub const PERCENTILES: [(&str, f64); 7] = [
    ("p50", 50.0),
    ("p90", 90.0),
    ("p95", 95.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
    ("p99.99", 99.99),
    ("max", 100.0),
];

pub fn parse_percentile(text: &str) -> Result<f64, UnitError> {
    PERCENTILES
        .iter()
        .find(|(name, _)| *name == text.trim())
        .map(|(_, p)| *p)
        .ok_or_else(|| {
            let names: Vec<&str> = PERCENTILES.iter().map(|(n, _)| *n).collect();
            UnitError::new(
                format!(
                    "unknown percentile {}; expected one of {}",
                    quoted(text),
                    names.join(", ")
                ),
                None,
            )
        })
}

/// The closest candidate to a misspelled word, if it is close enough to be a likely typo
/// (1 or 2 edits, a swap of two neighbours counting as one, and at most a third of the
/// candidate's length: `laod` is `load`).
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::osa_distance(word, c), *c))
        .filter(|(d, c)| *d > 0 && *d <= 2 && *d * 3 <= c.chars().count().max(3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The longest a scenario name may be: it names report folders.
pub const NAME_LEN_MAX: usize = 64;

/// A scenario name: lowercase letters, digits and dashes, since it names report folders.
pub fn parse_name(text: &str) -> Result<String, UnitError> {
    let valid = !text.is_empty()
        && text.len() <= NAME_LEN_MAX
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        return Ok(text.to_owned());
    }
    let slug: String = text
        .to_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let example = if slug.is_empty() || slug.len() > NAME_LEN_MAX {
        "black-friday".to_owned()
    } else {
        slug
    };
    Err(UnitError {
        message: format!(
            "{} is not a valid name: use 1 to {NAME_LEN_MAX} lowercase letters, digits and dashes",
            quoted(text)
        ),
        hint: Some(format!("write a name like {example:?}")),
    })
}

/// A whole number within inclusive bounds.
pub fn int_in(text: &str, min: u64, max: u64) -> Result<u64, UnitError> {
    let expected = if max == u64::MAX || (max == u64::from(u32::MAX) && min == 0) {
        format!("at least {min}")
    } else {
        format!("{min} to {max}")
    };
    let out_of_range = || UnitError {
        message: format!("{} is out of range: expected {expected}", quoted(text)),
        hint: None,
    };
    match parse_integer(text) {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        Ok(_) => Err(out_of_range()),
        // "-1" is a number, just outside the range; "four" is not a number at all.
        Err(_) if text.trim().starts_with('-') => Err(out_of_range()),
        Err(e) => Err(UnitError {
            message: format!(
                "expected a whole number ({expected}), found {}",
                quoted(text)
            ),
            hint: e.hint,
        }),
    }
}

/// A duration, optionally above zero, at most `max`.
pub fn duration_in(text: &str, positive: bool, max: Duration) -> Result<Duration, UnitError> {
    let d = parse_duration(text)?;
    if positive && d.is_zero() {
        return Err(UnitError {
            message: format!("{} must be longer than zero", quoted(text)),
            hint: Some(DURATION_HINT.to_owned()),
        });
    }
    if d > max {
        return Err(UnitError {
            message: format!(
                "{} is above the limit of {}",
                quoted(text),
                humantime::format_duration(max)
            ),
            hint: None,
        });
    }
    Ok(d)
}

/// One of a closed set of words; the error lists them and suggests the nearest.
pub fn choice<T: Clone>(text: &str, what: &str, options: &[(&str, T)]) -> Result<T, UnitError> {
    if let Some((_, value)) = options.iter().find(|(name, _)| *name == text) {
        return Ok(value.clone());
    }
    let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
    Err(UnitError {
        message: format!(
            "{} is not {what}; expected one of {}",
            quoted(text),
            names.join(", ")
        ),
        hint: did_you_mean(text, &names).map(|s| format!("did you mean {s:?}?")),
    })
}

/// A success-rate threshold, or `off` (or `false`) to disable the check.
pub fn threshold_or_off(text: &str) -> Result<Option<ShareThreshold>, UnitError> {
    match text.trim() {
        "off" | "false" => Ok(None),
        _ => parse_share_threshold(text).map(Some).map_err(|mut e| {
            e.hint = Some(
                r#"write a threshold like ">= 99.5%", or `off` to disable the check"#.to_owned(),
            );
            e
        }),
    }
}

/// A loopback address with a port, where doorbuster listens for the user's services (the
/// provider, a link's fault proxy).
pub fn parse_listen(text: &str) -> Result<std::net::SocketAddr, UnitError> {
    let addr: std::net::SocketAddr = text.trim().parse().map_err(|_| {
        UnitError::new(
            format!("{text:?} is not an address and port"),
            Some("write it like `127.0.0.1:12111`"),
        )
    })?;
    if !addr.ip().is_loopback() {
        return Err(UnitError::new(
            format!("{addr} is not a loopback address; doorbuster listens on loopback only"),
            Some("use 127.0.0.1 or [::1]"),
        ));
    }
    if addr.port() == 0 {
        return Err(UnitError::new(
            "port 0 would pick a port your service cannot know".to_owned(),
            Some("name the port your payment service calls, like `127.0.0.1:12111`"),
        ));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn durations_accept_humantime_forms() {
        // The forms the scenario docs promise all parse.
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(ms(250)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
    }

    #[test]
    fn durations_reject_bare_numbers_and_negatives() {
        // A bare number is ambiguous, and the hint repeats it with a unit.
        let e = parse_duration("90").unwrap_err();
        assert_eq!(e.message, r#""90" has no unit"#);
        assert_eq!(
            e.hint.as_deref(),
            Some(r#"write a duration with a unit, like "90s""#)
        );
        assert!(
            parse_duration("-5s")
                .unwrap_err()
                .message
                .contains("negative")
        );
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
        assert!(
            parse_duration("90 sekunden")
                .unwrap_err()
                .message
                .contains(r#"unknown unit "sekunden""#)
        );
    }

    #[test]
    fn rates_convert_to_per_second() {
        // Per-minute and per-hour rates are normalized to per second.
        assert_eq!(parse_rate("500/s"), Ok(Rate(500.0)));
        assert_eq!(parse_rate("30000/m"), Ok(Rate(500.0)));
        assert_eq!(parse_rate("3600/h"), Ok(Rate(1.0)));
        assert_eq!(parse_rate("0/s"), Ok(Rate(0.0)));
        assert_eq!(parse_rate(" 1_500 / s "), Ok(Rate(1500.0)));
    }

    #[test]
    fn rates_reject_bad_input() {
        // Every failure says which value was wrong.
        assert!(parse_rate("-5/s").unwrap_err().message.contains("negative"));
        assert!(
            parse_rate("500")
                .unwrap_err()
                .message
                .contains("no time unit")
        );
        assert!(
            parse_rate("500/d")
                .unwrap_err()
                .message
                .contains("unknown unit")
        );
        assert!(parse_rate("inf/s").is_err());
        assert!(parse_rate("NaN/s").is_err());
        assert!(
            parse_rate("2000000/s")
                .unwrap_err()
                .message
                .contains("limit")
        );
        assert_eq!(
            parse_positive_rate("-5/s").unwrap_err().message,
            r#""-5/s" must be positive"#
        );
        assert!(parse_positive_rate("0/s").is_err());
    }

    #[test]
    fn shares_need_a_percent_sign() {
        // `0.5` could mean half or half a percent, so it is refused with a hint.
        assert_eq!(parse_share("2.5%"), Ok(Share(0.025)));
        assert_eq!(parse_share("100%"), Ok(Share(1.0)));
        let e = parse_share("2").unwrap_err();
        assert!(e.hint.unwrap().starts_with(r#"write a share like "2.5%""#));
        assert!(
            parse_share("150%")
                .unwrap_err()
                .message
                .contains("between 0% and 100%")
        );
        assert!(parse_share("-1%").is_err());
    }

    #[test]
    fn thresholds_and_bounds() {
        // A bare share is "at least"; a bare duration is "at most".
        let t = parse_share_threshold(">= 99.5%").unwrap();
        assert_eq!(t.comparison, Comparison::AtLeast);
        assert!((t.share.0 - 0.995).abs() < 1e-12);
        assert_eq!(
            parse_share_threshold("99%").unwrap().comparison,
            Comparison::AtLeast
        );
        assert_eq!(
            parse_share_threshold("< 1%").unwrap().comparison,
            Comparison::LessThan
        );
        assert_eq!(
            parse_share_threshold("<= 1%").unwrap().comparison,
            Comparison::AtMost
        );
        assert_eq!(
            parse_share_threshold(">99%").unwrap().comparison,
            Comparison::GreaterThan
        );
        assert!(parse_share_threshold(">= lots").is_err());
        assert_eq!(
            parse_latency_bound("< 3s"),
            Ok((Comparison::LessThan, Duration::from_secs(3)))
        );
        assert_eq!(
            parse_latency_bound("<= 250ms"),
            Ok((Comparison::AtMost, ms(250)))
        );
        assert!(parse_latency_bound("> 3s").is_err());
        assert!(parse_latency_bound("< 0s").is_err());
    }

    #[test]
    fn latency_distributions() {
        // All four shapes parse, and their own limits are enforced.
        assert_eq!(parse_latency("5ms"), Ok(LatencyDist::Fixed(ms(5))));
        assert_eq!(
            parse_latency("5ms..20ms"),
            Ok(LatencyDist::Uniform {
                low: ms(5),
                high: ms(20)
            })
        );
        assert_eq!(
            parse_latency("normal(10ms, 2ms)"),
            Ok(LatencyDist::Normal {
                mean: ms(10),
                std_dev: ms(2)
            })
        );
        assert_eq!(
            parse_latency("lognormal(120ms, 0.4)"),
            Ok(LatencyDist::LogNormal {
                median: ms(120),
                sigma: 0.4
            })
        );
        assert!(
            parse_latency("5ms..1ms")
                .unwrap_err()
                .message
                .contains("empty range")
        );
        assert!(parse_latency("lognormal(120ms, 0)").is_err());
        assert!(parse_latency("lognormal(120ms, 4)").is_err());
        assert!(parse_latency("gauss(1ms, 2ms)").is_err());
        assert!(parse_latency("normal(1ms)").is_err());
        assert!(parse_latency("2h").is_err());
    }

    #[test]
    fn items_popularity_percentiles() {
        // Ranges are inclusive and ordered; a single count means exactly that many.
        assert_eq!(parse_items("1..5"), Ok((1, 5)));
        assert_eq!(parse_items("3"), Ok((3, 3)));
        assert!(parse_items("5..1").is_err());
        assert!(parse_items("0..3").is_err());
        assert!(parse_items("1..51").is_err());
        assert_eq!(parse_popularity("zipf(1.1)"), Ok(1.1));
        assert_eq!(parse_popularity("uniform"), Ok(0.0));
        assert!(parse_popularity("zipf(0)").is_err());
        assert!(parse_popularity("zipf(6)").is_err());
        assert_eq!(parse_percentile("p99.9"), Ok(99.9));
        assert_eq!(parse_percentile("max"), Ok(100.0));
        assert!(parse_percentile("p42").is_err());
    }

    #[test]
    fn integers_and_bools() {
        // Underscores are allowed in numbers; YAML 1.1 booleans are not.
        assert_eq!(parse_integer("1_000_000"), Ok(1_000_000));
        assert!(parse_integer("four").is_err());
        assert!(
            parse_integer("-1")
                .unwrap_err()
                .message
                .contains("negative")
        );
        assert!(parse_integer("99999999999999999999999").is_err());
        assert_eq!(parse_bool("true"), Ok(true));
        assert!(parse_bool("yes").is_err());
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn duration_round_trips(millis in 0u64..(48 * 3600 * 1000)) {
                // What humantime prints, the parser reads back exactly.
                let d = Duration::from_millis(millis);
                let text = humantime::format_duration(d).to_string();
                prop_assert_eq!(parse_duration(&text), Ok(d));
            }

            #[test]
            fn rate_round_trips(per in 0.0f64..1_000_000.0, unit in 0usize..3) {
                // Rust prints f64 so that it parses back to the same bits.
                let (suffix, factor) = [("s", 1.0), ("m", 1.0 / 60.0), ("h", 1.0 / 3600.0)][unit];
                let rate = parse_rate(&format!("{per}/{suffix}")).unwrap();
                prop_assert_eq!(rate.per_sec(), per * factor);
            }

            #[test]
            fn share_round_trips(percent in 0.0f64..=100.0) {
                let share = parse_share(&format!("{percent}%")).unwrap();
                prop_assert_eq!(share.fraction(), percent / 100.0);
            }

            #[test]
            fn parsers_never_panic(text in any::<String>()) {
                let _ = parse_duration(&text);
                let _ = parse_rate(&text);
                let _ = parse_positive_rate(&text);
                let _ = parse_share(&text);
                let _ = parse_share_threshold(&text);
                let _ = parse_latency_bound(&text);
                let _ = parse_latency(&text);
                let _ = parse_items(&text);
                let _ = parse_popularity(&text);
                let _ = parse_percentile(&text);
                let _ = parse_integer(&text);
                let _ = parse_bool(&text);
            }

            #[test]
            fn unit_shaped_strings_never_panic(text in r"[-+0-9._a-z%/()<>=, ]{0,24}") {
                // Random strings rarely look like units; these do, and reach the deeper code.
                let _ = parse_duration(&text);
                let _ = parse_rate(&text);
                let _ = parse_positive_rate(&text);
                let _ = parse_share_threshold(&text);
                let _ = parse_latency_bound(&text);
                let _ = parse_latency(&text);
                let _ = parse_items(&text);
                let _ = parse_popularity(&text);
            }
        }
    }
}
