//! Origin-cluster routing: the coworker set, the ownership directory, concurrent discovery
//! and ownership answers.

pub mod budget;
pub mod coworkers;
pub mod directory;
pub mod discovery;
pub mod ownership;

pub use budget::QueryBudget;
pub use coworkers::Coworkers;
pub use directory::Directory;
pub use discovery::{Discovery, DiscoveryConfig, Found};
pub use ownership::Identity;
