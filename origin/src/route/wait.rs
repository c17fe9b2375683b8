//! Waiting for a play's publisher: the one loop that looks here, asks coworkers, and
//! waits until `--wait-for-publisher` runs out. Its cost per waiting play (the stream it
//! joins, the questions it sends) is decided here and nowhere else.

use std::time::Duration;

use super::policy::{Here, Policy, Step, decide};
use crate::cluster::Found;
use crate::media::{Player, StreamKey};
use crate::state::Origin;

/// How often a relaying origin's play re-checks a stream only a relay publishes here
/// (no publish event will wake it when the encoder arrives).
const OWNER_RECHECK: Duration = Duration::from_millis(100);

/// Where the search for a stream ended.
pub enum Located {
    /// Play from the stream here.
    Here(Player),
    /// A coworker owns it and this play relays it; `player` is already joined, so the
    /// relay's first frames reach it.
    Relay { found: Found, player: Player },
    /// A coworker owns it and the client is sent there.
    Redirect(Found),
    /// Nowhere within `--wait-for-publisher`.
    NotFound,
}

/// What `player`'s stream has here right now.
fn here(player: &Player) -> Here {
    if player.stream().is_owned() {
        Here::Owned
    } else if player.publishing() {
        Here::Relayed
    } else {
        Here::Nothing
    }
}

/// Finds a play's stream under `policy`: here, on a coworker (all asked concurrently,
/// every `--reask-interval`), or wherever it shows up first within
/// `--wait-for-publisher`. `host` is the host the client addressed (echoed in ownership
/// queries). Dropping the future at any point releases everything it held.
pub async fn wait_for_publisher(
    origin: &Origin,
    key: &StreamKey,
    host: &str,
    policy: Policy,
) -> Located {
    // Join first, so a publish that lands while we look elsewhere is not missed.
    let mut player = origin.registry.play(key, origin.play_config());
    let deadline = tokio::time::Instant::now() + origin.config.wait_for_publisher;
    let interval = match policy {
        Policy::OwnerOnly => OWNER_RECHECK,
        Policy::Redirect | Policy::Relay => origin.config.reask_interval,
    };
    loop {
        if decide(policy, here(&player), false) == Step::Serve {
            return Located::Here(player);
        }
        if policy.asks_coworkers() {
            let peers = origin.coworkers.peers();
            if let Some(found) = origin.discovery.find_owner(&peers, key, host).await {
                match decide(policy, here(&player), true) {
                    Step::Serve => return Located::Here(player),
                    Step::Relay => return Located::Relay { found, player },
                    Step::Redirect => return Located::Redirect(found),
                    Step::Wait => {}
                }
            }
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Located::NotFound;
        }
        let wake = (now + interval).min(deadline);
        // A stream a relay publishes here gives no publish event to wait for.
        let publishing = player.publishing();
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            published = player.wait_published(), if !publishing => if !published {
                return Located::NotFound;
            },
        }
    }
}
