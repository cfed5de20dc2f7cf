//! `pause`: the service stops taking deliveries but keeps its group membership, its
//! partitions and its state (a GC pause, a stuck thread). Its backlog grows; nothing is
//! redelivered.

use super::Gate;
use crate::topology::ServiceKind;

pub fn pause(service: ServiceKind) -> Gate {
    Gate {
        service,
        gate: |faults| &faults.paused,
    }
}
