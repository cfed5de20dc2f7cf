//! What can go wrong between the harness and a broker, with the broker client's own error
//! kept as the source.
//!
//! Each [`TransportError`] variant says what was being done (reaching the broker,
//! publishing, a group operation) and carries a [`Cause`]: the client library's typed
//! error, or what the transport itself saw (no answer within a bound, a reply it cannot
//! use), with any context the transport adds in front. The message a report shows is the
//! variant's text followed by the cause's, as it always was.

use crate::config::units::UnitError;
use crate::events::Topic;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The target as given cannot be used (an unset `${ENV}`, a remote host without the
    /// opt-in): a scenario or command-line error, exit code 2.
    #[error("target {target}: {source}")]
    Config {
        target: String,
        #[source]
        source: Cause,
    },
    #[error("cannot reach the broker at {target}: {source}")]
    Unreachable {
        target: String,
        #[source]
        source: Cause,
    },
    #[error("publish to {topic} was refused: {source}")]
    Publish {
        topic: Topic,
        #[source]
        source: Cause,
    },
    /// The event was sent but no answer came (the connection dropped, the ack timed out): the
    /// broker may or may not have it. Counted apart from refused publishes and from loss.
    #[error("publish to {topic} got no answer: {source}")]
    Indeterminate {
        topic: Topic,
        #[source]
        source: Cause,
    },
    #[error("group {group}: {source}")]
    Group {
        group: String,
        #[source]
        source: Cause,
    },
    /// A call on the run's shared state (see `Transport::shared_store`) failed.
    #[error("shared state {space}: {source}")]
    Store {
        space: String,
        #[source]
        source: Cause,
    },
}

impl TransportError {
    /// Why a publish failed, short enough to count failures by: the HTTP status of a
    /// checkout endpoint's answer ("HTTP 503 Service Unavailable"), else the whole message.
    pub fn reason(&self) -> String {
        let mut cause = match self {
            TransportError::Publish { source, .. }
            | TransportError::Indeterminate { source, .. } => source,
            other => return other.to_string(),
        };
        loop {
            match cause {
                Cause::HttpStatus { status, .. } => return format!("HTTP {status}"),
                Cause::Context { source, .. } => cause = source,
                _ => return self.to_string(),
            }
        }
    }

    /// A failed publish: `Publish` when the broker provably refused it (or it never left),
    /// `Indeterminate` when it may have arrived.
    pub fn failed_publish(topic: Topic, source: impl Into<Cause>, refused: bool) -> Self {
        let source = source.into();
        if refused {
            TransportError::Publish { topic, source }
        } else {
            TransportError::Indeterminate { topic, source }
        }
    }
}

/// Why a transport call failed.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    /// What the transport itself saw: no answer within a bound, a reply it cannot use, a
    /// state it refuses (a group nobody joined, a rewind the queue type cannot make).
    #[error("{0}")]
    Observed(String),
    /// A target refused before connecting: the problem and its hint.
    #[error("{}", config_text(.0))]
    Config(UnitError),
    #[error(transparent)]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A Kafka answer's error code (a topic the admin API could not create or delete).
    #[error(transparent)]
    KafkaCode(#[from] rdkafka::types::RDKafkaErrorCode),
    #[error(transparent)]
    Redis(#[from] ::redis::RedisError),
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    /// async-nats has one error type per call (`ConnectError`, `PublishError`, ...); they
    /// are kept as they come.
    #[error(transparent)]
    Nats(Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A request to a checkout endpoint that got no answer, without its URL (reqwest's
    /// message may quote it); its own message is generic, so its causes are shown too.
    #[error("{}", chain_text(.0))]
    Http(#[source] reqwest::Error),
    /// The same for a plain `http://` endpoint (`http_client::plain`).
    #[error("{}", chain_text(.0))]
    Plain(#[source] crate::http_client::plain::Failure),
    /// A checkout endpoint's answer that was not a success, with the start of its body.
    #[error("HTTP {status}{}", if .excerpt.is_empty() { String::new() } else { format!(": {}", .excerpt) })]
    HttpStatus {
        status: reqwest::StatusCode,
        excerpt: String,
    },
    /// A task the transport (or the harness around it) waited on panicked.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    /// What the transport was doing when `source` happened (`delete stream`, `cleanup`).
    #[error("{context}: {source}")]
    Context {
        context: String,
        #[source]
        source: Box<Cause>,
    },
}

/// An error's message followed by those of its causes, `: `-separated.
fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn config_text(e: &UnitError) -> String {
    match &e.hint {
        Some(hint) => format!("{} ({hint})", e.message),
        None => e.message.clone(),
    }
}

impl Cause {
    /// An async-nats error, kept as the source.
    pub fn nats(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Cause {
        Cause::Nats(e.into())
    }

    /// This cause, with what the transport was doing in front of it.
    pub fn context(self, context: impl Into<String>) -> Cause {
        Cause::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }
}

impl From<String> for Cause {
    fn from(observed: String) -> Cause {
        Cause::Observed(observed)
    }
}

impl From<&str> for Cause {
    fn from(observed: &str) -> Cause {
        Cause::Observed(observed.to_owned())
    }
}

impl From<UnitError> for Cause {
    fn from(e: UnitError) -> Cause {
        Cause::Config(e)
    }
}
