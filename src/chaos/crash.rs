//! `crash`: the service's consumers stop without committing or acking anything they hold;
//! the runner brings new ones up when the fault stops (`restart_after`). The broker hands
//! the uncommitted events to the new members: redeliveries follow.

use super::Gate;
use crate::topology::ServiceKind;

pub fn crash(service: ServiceKind) -> Gate {
    Gate {
        service,
        gate: |faults| &faults.down,
    }
}
