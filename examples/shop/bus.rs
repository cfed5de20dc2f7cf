//! The shop's broker: Redis Streams or NATS JetStream, behind the three things a service
//! does with it: take the next events of its input, ack one, write an output once.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamPendingReply, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, Value};

/// One event read from the input, and what acks it.
pub struct Entry {
    pub payload: Option<Vec<u8>>,
    pub ack: Ack,
}

pub enum Ack {
    /// The entry id.
    Redis(String),
    Nats(Box<jetstream::Message>),
}

impl Entry {
    pub fn id(&self) -> String {
        match &self.ack {
            Ack::Redis(id) => id.clone(),
            Ack::Nats(m) => m
                .info()
                .map_or_else(|_| "?".to_owned(), |i| i.stream_sequence.to_string()),
        }
    }
}

pub enum Bus {
    Redis(RedisBus),
    Nats(Box<NatsBus>),
}

pub struct RedisBus {
    conn: MultiplexedConnection,
    prefix: String,
    input: String,
    group: String,
    consumer: String,
    /// `0` re-reads what this consumer holds (after a restart, or what failed); `>` is new.
    from: String,
}

pub struct NatsBus {
    js: jetstream::Context,
    consumer: PullConsumer,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Like any service started beside its broker, it waits for it (half a minute at most), and
/// says why each try failed.
async fn patiently<T, E: std::fmt::Display, F: Future<Output = Result<T, E>>>(
    mut connect: impl FnMut() -> F,
) -> Result<T, E> {
    let mut tries = 0;
    loop {
        match connect().await {
            Ok(c) => return Ok(c),
            Err(e) if tries >= 60 => return Err(e),
            Err(e) => {
                eprintln!("waiting for the broker (try {}): {e}", tries + 1);
                tries += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

impl Bus {
    /// Connects to `url` (`redis://` or `nats://`) and joins `group` on `input` from its
    /// end (the first time; a restart goes on where the group was).
    pub async fn connect(
        url: &str,
        prefix: &str,
        input: &str,
        group: &str,
        consumer: &str,
    ) -> Result<Bus, Error> {
        if url.starts_with("nats://") {
            let client = patiently(|| async_nats::connect(url)).await?;
            let js = jetstream::new(client);
            // The shop's own stream holds every subject under its prefix.
            let stream = js
                .get_or_create_stream(jetstream::stream::Config {
                    name: prefix.replace('.', "_"),
                    subjects: vec![format!("{prefix}.>")],
                    ..Default::default()
                })
                .await?;
            let consumer = stream
                .get_or_create_consumer(
                    group,
                    jetstream::consumer::pull::Config {
                        durable_name: Some(group.to_owned()),
                        filter_subject: input.to_owned(),
                        deliver_policy: jetstream::consumer::DeliverPolicy::New,
                        ack_wait: Duration::from_secs(5),
                        ..Default::default()
                    },
                )
                .await?;
            return Ok(Bus::Nats(Box::new(NatsBus { js, consumer })));
        }
        let client = redis::Client::open(url)?;
        // Reads block for half a second: the answer may take that long.
        let config =
            redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(10)));
        let mut conn =
            patiently(|| client.get_multiplexed_async_connection_with_config(&config)).await?;
        let created: redis::RedisResult<()> = conn.xgroup_create_mkstream(input, group, "$").await;
        if let Err(e) = created
            && e.code() != Some("BUSYGROUP")
        {
            return Err(e.into());
        }
        Ok(Bus::Redis(RedisBus {
            conn,
            prefix: prefix.to_owned(),
            input: input.to_owned(),
            group: group.to_owned(),
            consumer: consumer.to_owned(),
            from: "0".to_owned(),
        }))
    }

    /// The next events, waiting half a second at most.
    pub async fn next(&mut self) -> Result<Vec<Entry>, Error> {
        match self {
            Bus::Redis(bus) => bus.next().await,
            Bus::Nats(bus) => {
                let mut batch = bus
                    .consumer
                    .fetch()
                    .max_messages(64)
                    .expires(Duration::from_millis(500))
                    .messages()
                    .await?;
                let mut entries = Vec::new();
                while let Some(message) = batch.next().await {
                    let message = message?;
                    entries.push(Entry {
                        payload: Some(message.payload.to_vec()),
                        ack: Ack::Nats(Box::new(message)),
                    });
                }
                Ok(entries)
            }
        }
    }

    pub async fn ack(&self, ack: &Ack) -> Result<(), Error> {
        match (self, ack) {
            (Bus::Redis(bus), Ack::Redis(id)) => {
                let mut conn = bus.conn.clone();
                let _: i64 = conn.xack(&bus.input, &bus.group, &[id]).await?;
                Ok(())
            }
            (Bus::Nats(_), Ack::Nats(message)) => message.ack().await,
            _ => Err("an ack from another broker".into()),
        }
    }

    /// Writes an output once: Redis sets a marker per event id in the same step as the
    /// append (a script runs atomically); JetStream drops a second publish with the same
    /// `Nats-Msg-Id` within its duplicate window.
    pub async fn emit(&self, output: &str, event_id: &str, body: &str) -> Result<(), Error> {
        match self {
            Bus::Redis(bus) => {
                const ONCE: &str = r"
                    if redis.call('SET', KEYS[1], 1, 'NX', 'EX', 3600) then
                        return redis.call('XADD', KEYS[2], '*', 'payload', ARGV[1])
                    end
                    return false";
                let mut conn = bus.conn.clone();
                let marker = format!("{}:sent:{event_id}", bus.prefix);
                let _: Value = redis::cmd("EVAL")
                    .arg(ONCE)
                    .arg(2)
                    .arg(marker)
                    .arg(output)
                    .arg(body)
                    .query_async(&mut conn)
                    .await?;
                Ok(())
            }
            Bus::Nats(bus) => {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", event_id);
                bus.js
                    .publish_with_headers(output.to_owned(), headers, body.to_owned().into())
                    .await?
                    .await?;
                Ok(())
            }
        }
    }
}

impl RedisBus {
    async fn next(&mut self) -> Result<Vec<Entry>, Error> {
        let opts = StreamReadOptions::default()
            .group(&self.group, &self.consumer)
            .count(64)
            .block(500);
        let reply: StreamReadReply = self
            .conn
            .xread_options(&[&self.input], &[&self.from], &opts)
            .await?;
        let entries: Vec<Entry> = reply
            .keys
            .into_iter()
            .flat_map(|k| k.ids)
            .map(|entry| Entry {
                payload: match entry.map.get("payload") {
                    Some(Value::BulkString(b)) => Some(b.clone()),
                    _ => None,
                },
                ack: Ack::Redis(entry.id),
            })
            .collect();
        if self.from == "0" {
            // Held entries re-read; those that keep failing stay pending: new ones next,
            // and back to the held ones after.
            self.from = ">".to_owned();
        } else {
            let pending: StreamPendingReply = self.conn.xpending(&self.input, &self.group).await?;
            if pending.count() > 0 {
                self.from = "0".to_owned();
            }
        }
        Ok(entries)
    }
}
