//! The consumer groups a transport knows, by name: made on the first member's `subscribe`,
//! joined by later members that must name the same topics, looked up by `rewind` and `lag`.
//! Each transport keeps its own state per group; this is the registry they share.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::TransportError;
use crate::events::Topic;
use crate::sync::lock;

/// What the registry needs to know of a transport's group state.
pub(crate) trait GroupTopics {
    /// The topics the group's first member named.
    fn topics(&self) -> &[Topic];
}

pub(crate) struct Groups<G>(Mutex<HashMap<String, Arc<G>>>);

impl<G> Default for Groups<G> {
    fn default() -> Self {
        Groups(Mutex::new(HashMap::new()))
    }
}

impl<G: GroupTopics> Groups<G> {
    /// The group `name`, made by `make` if it is new. A member naming other topics than the
    /// group's first member did is refused.
    pub(crate) fn join(
        &self,
        name: &str,
        topics: &[Topic],
        make: impl FnOnce() -> Result<G, TransportError>,
    ) -> Result<Arc<G>, TransportError> {
        let mut groups = lock(&self.0);
        if let Some(group) = groups.get(name) {
            if group.topics() != topics {
                return Err(TransportError::Group {
                    group: name.to_owned(),
                    source: format!(
                        "members must consume the same topics: {:?} vs {:?}",
                        group.topics(),
                        topics
                    )
                    .into(),
                });
            }
            return Ok(group.clone());
        }
        let group = Arc::new(make()?);
        groups.insert(name.to_owned(), group.clone());
        Ok(group)
    }

    /// A group some member subscribed to.
    pub(crate) fn existing(&self, name: &str) -> Result<Arc<G>, TransportError> {
        lock(&self.0)
            .get(name)
            .cloned()
            .ok_or_else(|| TransportError::Group {
                group: name.to_owned(),
                source: "no such group (no member ever subscribed)".into(),
            })
    }

    /// Every group, in no particular order.
    pub(crate) fn all(&self) -> Vec<Arc<G>> {
        lock(&self.0).values().cloned().collect()
    }
}
