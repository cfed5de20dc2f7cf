//! The one AMQP connection of a transport, re-established after the broker goes away.
//!
//! lapin does not reconnect by itself. [`Link::live`] hands out the current connection and
//! its confirm-mode publish channel; when they are closed it reconnects (one attempt at a
//! time, bounded) and re-declares the topic exchanges, backing off between failed attempts so
//! callers during an outage fail fast instead of hammering the broker.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::{
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::clock::{Clock, RunTime, duration_ns};
use crate::events::Topic;
use crate::transport::Cause;
use crate::transport::backoff::Backoff;

/// How long one connection attempt (TCP, TLS, login, declares) may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub(super) const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A connected connection with its publish channel.
#[derive(Clone)]
pub(super) struct Live {
    pub conn: Arc<Connection>,
    pub publish: Channel,
    /// Increases with every reconnect.
    pub generation: u64,
}

impl Live {
    fn usable(&self) -> bool {
        self.conn.status().connected() && self.publish.status().connected()
    }
}

pub(super) struct Link {
    url: String,
    namespace: String,
    clock: Clock,
    current: Mutex<Option<Live>>,
    /// Serialises reconnect attempts.
    connecting: tokio::sync::Mutex<()>,
    retry: Mutex<Retry>,
}

struct Retry {
    not_before: RunTime,
    backoff: Backoff,
    last_error: String,
    generation: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The exchange of a topic in this run.
pub(super) fn exchange_name(namespace: &str, topic: Topic) -> String {
    format!("{namespace}.{}", topic.name())
}

/// The stream queue that keeps every event of a topic in this run: stream groups read it,
/// and a classic or quorum group that joins late is seeded from it.
pub(super) fn log_name(namespace: &str, topic: Topic) -> String {
    format!("{namespace}.log.{}", topic.name())
}

pub(super) fn stream_arguments() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("stream")),
    );
    args
}

impl Link {
    pub(super) fn new(url: String, namespace: String, clock: Clock) -> Link {
        Link {
            url,
            namespace,
            clock,
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            retry: Mutex::new(Retry {
                not_before: 0,
                backoff: Backoff::new(BACKOFF_MIN, BACKOFF_MAX),
                last_error: String::new(),
                generation: 0,
            }),
        }
    }

    /// The current connection, reconnecting if it is gone. Fails at once (with the last
    /// error) while backing off after a failed attempt.
    pub(super) async fn live(&self) -> Result<Live, Cause> {
        if let Some(live) = lock(&self.current).as_ref().filter(|l| l.usable()) {
            return Ok(live.clone());
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(live) = lock(&self.current).as_ref().filter(|l| l.usable()) {
            return Ok(live.clone());
        }
        {
            let retry = lock(&self.retry);
            if self.clock.now() < retry.not_before {
                return Err(format!("reconnecting (last error: {})", retry.last_error).into());
            }
        }
        let attempt = tokio::time::timeout(CONNECT_TIMEOUT, self.open()).await;
        let result: Result<_, Cause> = match attempt {
            Ok(Ok((conn, publish))) => Ok((conn, publish)),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}").into()),
        };
        let mut retry = lock(&self.retry);
        match result {
            Ok((conn, publish)) => {
                retry.backoff.reset();
                retry.generation += 1;
                let live = Live {
                    conn: Arc::new(conn),
                    publish,
                    generation: retry.generation,
                };
                if retry.generation > 1 {
                    tracing::info!(generation = retry.generation, "rabbitmq: reconnected");
                }
                *lock(&self.current) = Some(live.clone());
                Ok(live)
            }
            Err(e) => {
                retry.not_before = self.clock.now() + duration_ns(retry.backoff.next_delay());
                retry.last_error = e.to_string();
                tracing::warn!(error = %e, "rabbitmq: connect failed");
                Err(e)
            }
        }
    }

    /// Forgets the current connection if it is still `generation` (after a publish channel
    /// error, so the next caller reconnects).
    pub(super) fn invalidate(&self, generation: u64) {
        let mut current = lock(&self.current);
        if current.as_ref().is_some_and(|l| l.generation == generation) {
            *current = None;
        }
    }

    async fn open(&self) -> lapin::Result<(Connection, Channel)> {
        let props = ConnectionProperties::default()
            .with_connection_name(format!("doorbuster {}", self.namespace).into());
        let conn = Connection::connect(&self.url, props).await?;
        let publish = conn.create_channel().await?;
        for topic in Topic::ALL {
            publish
                .exchange_declare(
                    exchange_name(&self.namespace, topic).into(),
                    ExchangeKind::Fanout,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            let log = log_name(&self.namespace, topic);
            publish
                .queue_declare(
                    log.as_str().into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..QueueDeclareOptions::default()
                    },
                    stream_arguments(),
                )
                .await?;
            publish
                .queue_bind(
                    log.into(),
                    exchange_name(&self.namespace, topic).into(),
                    "".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok((conn, publish))
    }

    /// Closes the connection (end of the run).
    pub(super) async fn close(&self) {
        let live = lock(&self.current).take();
        if let Some(live) = live {
            let _ = live.conn.close(200, "doorbuster done".into()).await;
        }
    }
}
