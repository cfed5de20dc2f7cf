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

/// One of the user's exchanges as observe mode names it (`orders_to`, an output's `from`):
/// `exchange`, or `exchange:routing-key`. The first `:` ends the exchange's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub exchange: String,
    /// For `orders_to`, the routing key of every order; for a tap, its binding key. `None`:
    /// the order's rendered key (else its id), and a tap binds with `#`.
    pub key: Option<String>,
}

/// The longest exchange name or routing key AMQP carries (a short string), in bytes.
pub const NAME_MAX: usize = 255;

impl Address {
    /// Reads `exchange` or `exchange:routing-key`; the problem, in words, when it is neither.
    pub fn parse(name: &str) -> Result<Address, String> {
        let (exchange, key) = match name.split_once(':') {
            Some((exchange, key)) => (exchange, Some(key)),
            None => (name, None),
        };
        if exchange.is_empty() {
            return Err(format!("{name:?} names no exchange before the `:`"));
        }
        if key == Some("") {
            return Err(format!("{name:?} has a `:` and no routing key after it"));
        }
        for (what, text) in [("exchange name", Some(exchange)), ("routing key", key)] {
            if let Some(text) = text
                && text.len() > NAME_MAX
            {
                return Err(format!(
                    "the {what} in {name:?} is {} bytes long; AMQP carries at most {NAME_MAX}",
                    text.len()
                ));
            }
        }
        Ok(Address {
            exchange: exchange.to_owned(),
            key: key.map(str::to_owned),
        })
    }

    /// The key a tap binds its queue with: the given one, else `#` (everything on a topic
    /// exchange; a fanout or headers exchange ignores it).
    pub fn binding_key(&self) -> &str {
        self.key.as_deref().unwrap_or("#")
    }
}

#[cfg(test)]
mod tests {
    use super::Address;

    #[test]
    fn an_address_is_an_exchange_and_maybe_a_routing_key() {
        let plain = Address::parse("shop.events").unwrap();
        assert_eq!(
            (plain.exchange.as_str(), plain.key.as_deref()),
            ("shop.events", None)
        );
        assert_eq!(plain.binding_key(), "#");
        let keyed = Address::parse("shop:order.paid:eu").unwrap();
        assert_eq!(keyed.exchange, "shop");
        assert_eq!(keyed.binding_key(), "order.paid:eu");
        assert!(
            Address::parse(":orders")
                .unwrap_err()
                .contains("names no exchange")
        );
        assert!(
            Address::parse("shop:")
                .unwrap_err()
                .contains("no routing key")
        );
        let long = "x".repeat(256);
        assert!(Address::parse(&long).unwrap_err().contains("256 bytes"));
        assert!(Address::parse(&format!("shop:{long}")).is_err());
    }
}
