//! Command-line pieces every benchmark shares: where the server under test and the load
//! run, and which test clip is published.

use std::path::PathBuf;

use anyhow::Result;

/// Core pinning: the server under test on one core, this process on the other.
#[derive(clap::Args, Debug, Clone)]
pub struct Cores {
    /// Core for the server under test.
    #[arg(long, default_value_t = 0)]
    pub server_cpu: usize,
    /// Core for this process (players, publishers) and helper servers.
    #[arg(long, default_value_t = 1)]
    pub client_cpu: usize,
    /// Do not pin anything (for machines with one core).
    #[arg(long)]
    pub no_pin: bool,
}

impl Cores {
    /// `cpu` unless pinning is off.
    pub fn pin(&self, cpu: usize) -> Option<usize> {
        (!self.no_pin).then_some(cpu)
    }

    /// The server under test's core, unless pinning is off.
    pub fn server(&self) -> Option<usize> {
        self.pin(self.server_cpu)
    }

    /// Pins this process to the client core, unless pinning is off.
    pub fn pin_client(&self) {
        if !self.no_pin {
            crate::pin_self(self.client_cpu);
        }
    }
}

/// The published test clip.
#[derive(clap::Args, Debug, Clone)]
pub struct ClipArgs {
    /// Test clip length, seconds (20–30).
    #[arg(long, default_value_t = 24)]
    pub clip_seconds: u32,
    /// Use this FLV instead of generating the test clip.
    #[arg(long)]
    pub flv: Option<PathBuf>,
}

impl ClipArgs {
    /// The FLV to publish: the given one, or a generated clip.
    pub fn path(&self) -> Result<PathBuf> {
        match &self.flv {
            Some(p) => Ok(p.clone()),
            None => crate::test_flv(self.clip_seconds),
        }
    }
}
