//! doorbuster: a load-testing and chaos harness for commerce event systems.
//!
//! ```text
//! scenario.yaml --parse+validate--> Scenario --plan--> Schedule (arrival times)
//!   Schedule --> load::driver (open model) --> orders::OrderFactory --> Transport::publish
//!   Transport --> services (consumer groups) --> Transport::publish ...
//!   every publish / delivery / effect --> observe (ledger + HdrHistograms)
//!   observe + ground truth --> verify (checks) --> report + exit code
//! ```

pub mod bench;
pub mod capacity;
pub mod chaos;
pub mod checks;
pub mod clock;
pub mod config;
pub mod events;
pub mod exit;
pub mod http_client;
pub mod latency;
pub mod load;
pub mod observe;
pub mod orders;
pub mod publisher;
pub mod report;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod services;
pub mod sync;
pub mod tls;
pub mod topology;
pub mod transport;
pub mod verify;
