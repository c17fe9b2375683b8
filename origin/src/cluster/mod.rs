//! Origin-cluster routing: the coworker set, concurrent discovery and ownership answers.

pub mod budget;
pub mod coworkers;
pub mod discovery;
pub mod ownership;

pub use budget::QueryBudget;
pub use coworkers::Coworkers;
pub use discovery::{Discovery, DiscoveryConfig, Found};
pub use ownership::Identity;
