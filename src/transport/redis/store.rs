//! The run's shared state on Redis (see [`SharedStore`]), under `{namespace}:state:`.
//!
//! A claim is a bit: one bitmap per space and 2³² keys, and `SETBIT` answers the bit's old
//! value, so claiming is one atomic command and a million dense order ids take 128 KB. A
//! first value is `SET key value NX GET` (Redis 7), which stores and answers what was there
//! in one step. The run's cleanup deletes these keys with its streams.

use std::sync::Arc;

use ::redis::{Cmd, RedisError, Value};

use super::{Inner, query, reply};
use crate::transport::{Cause, SharedStore, TransportError};

pub(super) struct RedisStore {
    pub(super) inner: Arc<Inner>,
}

impl RedisStore {
    /// The bitmap holding `key`'s claim bit, and the bit's offset in it.
    fn bit(&self, space: &str, key: u64) -> (String, u64) {
        let ns = &self.inner.cfg.namespace;
        (
            format!("{ns}:state:{space}:{}", key >> 32),
            key & 0xffff_ffff,
        )
    }

    async fn ask(&self, space: &str, cmd: &Cmd) -> Result<Value, TransportError> {
        query(&self.inner, cmd)
            .await
            .map_err(|e: RedisError| TransportError::Store {
                space: space.to_owned(),
                source: Cause::from(e),
            })
    }
}

#[async_trait::async_trait]
impl SharedStore for RedisStore {
    async fn claim(&self, space: &str, key: u64) -> Result<bool, TransportError> {
        let (bitmap, offset) = self.bit(space, key);
        let mut cmd = ::redis::cmd("SETBIT");
        cmd.arg(bitmap).arg(offset).arg(1);
        Ok(reply::int(&self.ask(space, &cmd).await?) == Some(0))
    }

    async fn claimed(&self, space: &str, key: u64) -> Result<bool, TransportError> {
        let (bitmap, offset) = self.bit(space, key);
        let mut cmd = ::redis::cmd("GETBIT");
        cmd.arg(bitmap).arg(offset);
        Ok(reply::int(&self.ask(space, &cmd).await?) == Some(1))
    }

    async fn put_first(
        &self,
        space: &str,
        key: u64,
        value: &[u8],
    ) -> Result<Option<Vec<u8>>, TransportError> {
        let ns = &self.inner.cfg.namespace;
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(format!("{ns}:state:{space}:{key:016x}"))
            .arg(value)
            .arg("NX")
            .arg("GET");
        match self.ask(space, &cmd).await? {
            Value::Nil => Ok(None),
            other => reply::bytes(&other)
                .map(|b| Some(b.to_vec()))
                .ok_or_else(|| TransportError::Store {
                    space: space.to_owned(),
                    source: Cause::Observed(format!("SET NX GET answered {other:?}")),
                }),
        }
    }
}
