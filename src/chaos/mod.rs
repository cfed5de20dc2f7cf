//! Chaos: the faults a run injects into the system under test.
//!
//! The chaos timeline (scenario `faults`, each with `at` and `for`) switches faults on and off;
//! this module holds the fault machinery it drives. So far that is the TCP fault proxy, which
//! sits between the user's services and a networked broker in observe mode (DESIGN.md §3, §7)
//! and applies link faults there. Nothing here publishes events, reads scenario files or
//! decides verdicts: a fault only makes life hard, the checks judge the result.

pub mod proxy;
