//! RabbitMQ's part of a scenario's `target:`: what selects it, the keys it takes, their
//! validation and the options its queues are declared with.

use crate::config::check::{Checker, Path};
use crate::config::units::choice;
use crate::transport::settings::{self, BrokerSettings, BrokerSpec, OptionKeys};

/// RabbitMQ queue types (`x-queue-type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[derive(strum::IntoStaticStr, strum::VariantArray)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum QueueType {
    #[default]
    Classic,
    Quorum,
    Stream,
}

/// The keys RabbitMQ takes in a `target:` mapping besides `url`: its schema fragment.
#[derive(schemars::JsonSchema)]
#[allow(dead_code)] // a schema, never built
pub struct Keys {
    /// RabbitMQ queue type (default classic); only `stream` queues can be replayed.
    queue_type: Option<QueueType>,
    /// Deliveries of one event before the broker gives up on it (NATS MaxDeliver,
    /// RabbitMQ quorum `x-delivery-limit`; default unlimited).
    max_deliver: Option<crate::config::schema::Int<1, 1_000_000>>,
}

/// How the run's queues are declared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Options {
    /// The type of the queue declared per service.
    pub queue_type: QueueType,
    /// A quorum queue's `x-delivery-limit`; `None` is unlimited.
    pub max_deliver: Option<u32>,
}

impl BrokerSettings for Options {
    const SPEC: BrokerSpec = BrokerSpec {
        name: "rabbitmq",
        label: "RabbitMQ",
        schemes: &[("amqp", 5672), ("amqps", 5671)],
        default_url: "amqp://guest:guest@127.0.0.1:5672/%2f",
    };
    type Keys = Keys;

    fn validate(check: &mut Checker, keys: &mut OptionKeys, path: &Path) -> Self {
        let queue_type = check.or_default(
            &keys.take("queue_type"),
            &path.key("queue_type"),
            QueueType::Classic,
            |t| {
                let options: Vec<(&str, QueueType)> = <QueueType as strum::VariantArray>::VARIANTS
                    .iter()
                    .map(|&q| (q.into(), q))
                    .collect();
                choice(t, "a queue type", &options)
            },
        );
        Self {
            queue_type,
            max_deliver: settings::max_deliver(check, keys, path),
        }
    }

    /// Classic and quorum queues forget what they delivered: only a stream can be rewound.
    fn cannot_rewind(&self) -> Option<(&'static str, &'static str)> {
        (self.queue_type != QueueType::Stream).then_some((
            "RabbitMQ classic and quorum queues cannot be rewound, so a replay fault would \
             never happen",
            "set `target.queue_type: stream`, or remove the fault",
        ))
    }
}
