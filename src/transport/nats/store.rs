//! The run's shared state on NATS (see [`SharedStore`]): a JetStream key-value bucket
//! `{stream}-state` (file storage, one revision per key), keys `{space}.{key}`. A claim is a
//! `create`, which the server refuses for a key that exists, so two shards cannot both win;
//! a first value is a `create`, and on refusal a `get` of the value that won. The run's
//! cleanup deletes the bucket with the stream.

use async_nats::jetstream::kv::{self, CreateErrorKind};
use bytes::Bytes;

use super::{ADMIN_TIMEOUT, Inner};
use crate::transport::{Cause, SharedStore, TransportError};

pub(super) struct NatsStore {
    kv: kv::Store,
}

/// The bucket of a run whose stream is `stream`.
pub(super) fn bucket(stream: &str) -> String {
    format!("{stream}-state")
}

/// Deletes the run's bucket, if a sharded run made one (none there is fine).
pub(super) async fn delete(inner: &Inner) -> Result<(), TransportError> {
    use async_nats::jetstream::ErrorCode;
    use async_nats::jetstream::context::GetStreamErrorKind;
    let name = bucket(&inner.stream);
    // A bucket is the stream `KV_{bucket}`.
    let deleted = inner.js.delete_stream(format!("KV_{name}"));
    match tokio::time::timeout(ADMIN_TIMEOUT, deleted).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e))
            if matches!(e.kind(), GetStreamErrorKind::JetStream(j)
                if j.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
        {
            Ok(())
        }
        Ok(Err(e)) => Err(store_error(&name, Cause::nats(e).context("delete bucket"))),
        Err(_) => Err(store_error(&name, "delete bucket: no answer".into())),
    }
}

fn store_error(space: &str, cause: Cause) -> TransportError {
    TransportError::Store {
        space: space.to_owned(),
        source: cause,
    }
}

impl NatsStore {
    /// Opens the run's bucket, making it if no shard has yet (two making it at once agree:
    /// the server accepts the same configuration twice). The bucket's stream is made here,
    /// as the key-value API would make it, because the client's own bucket creation first
    /// reads account details that servers before 2.10 do not send in the shape it expects.
    pub(super) async fn open(inner: &Inner) -> Result<NatsStore, TransportError> {
        use async_nats::jetstream::stream::{Config, DiscardPolicy, StorageType};
        let name = bucket(&inner.stream);
        let config = Config {
            name: format!("KV_{name}"),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 1,
            storage: StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: DiscardPolicy::New,
            ..Default::default()
        };
        let open = async {
            inner
                .js
                .get_or_create_stream(config)
                .await
                .map_err(|e| Cause::nats(e).context("create bucket"))?;
            inner
                .js
                .get_key_value(&name)
                .await
                .map_err(|e| Cause::nats(e).context("open bucket"))
        };
        match tokio::time::timeout(ADMIN_TIMEOUT, open).await {
            Ok(Ok(kv)) => Ok(NatsStore { kv }),
            Ok(Err(cause)) => Err(store_error(&name, cause)),
            Err(_) => Err(store_error(&name, "create bucket: no answer".into())),
        }
    }

    /// Creates `key` with `value`: `Ok(true)` when this call made it, `Ok(false)` when it
    /// was there.
    async fn create(&self, space: &str, key: &str, value: Bytes) -> Result<bool, TransportError> {
        let made = tokio::time::timeout(ADMIN_TIMEOUT, self.kv.create(key, value)).await;
        match made {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) if e.kind() == CreateErrorKind::AlreadyExists => Ok(false),
            Ok(Err(e)) => Err(store_error(space, Cause::nats(e))),
            Err(_) => Err(store_error(space, "create: no answer".into())),
        }
    }

    async fn get(&self, space: &str, key: String) -> Result<Option<Bytes>, TransportError> {
        match tokio::time::timeout(ADMIN_TIMEOUT, self.kv.get(key)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(store_error(space, Cause::nats(e))),
            Err(_) => Err(store_error(space, "get: no answer".into())),
        }
    }
}

#[async_trait::async_trait]
impl SharedStore for NatsStore {
    async fn claim(&self, space: &str, key: u64) -> Result<bool, TransportError> {
        self.create(space, &format!("{space}.{key}"), Bytes::new())
            .await
    }

    async fn claimed(&self, space: &str, key: u64) -> Result<bool, TransportError> {
        Ok(self.get(space, format!("{space}.{key}")).await?.is_some())
    }

    async fn put_first(
        &self,
        space: &str,
        key: u64,
        value: &[u8],
    ) -> Result<Option<Vec<u8>>, TransportError> {
        let name = format!("{space}.{key:016x}");
        if self
            .create(space, &name, Bytes::copy_from_slice(value))
            .await?
        {
            return Ok(None);
        }
        match self.get(space, name).await? {
            Some(there) => Ok(Some(there.to_vec())),
            None => Err(store_error(space, "a key made and then gone".into())),
        }
    }
}
