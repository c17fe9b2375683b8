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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::auth::Auth;
    use crate::cluster::Identity;
    use crate::config::Config;
    use crate::media::{Publisher, PublisherInfo};

    /// A lone origin (no coworkers) that waits `wait` for publishers.
    fn origin(wait: Duration) -> Arc<Origin> {
        let config = Config {
            wait_for_publisher: wait,
            ..Config::default()
        };
        Origin::new(config, Identity::default(), Auth::open())
    }

    fn key() -> StreamKey {
        StreamKey::new(origin_wire::DEFAULT_VHOST, "live", "cam")
    }

    fn publish(origin: &Origin, upstream: Option<&str>) -> Publisher {
        let info = PublisherInfo {
            id: 1,
            addr: None,
            since: Instant::now(),
            upstream: upstream.map(str::to_string),
        };
        origin.registry.publish(&key(), info).expect("free name")
    }

    fn outcome(l: &Located) -> &'static str {
        match l {
            Located::Here(_) => "here",
            Located::Relay { .. } => "relay",
            Located::Redirect(_) => "redirect",
            Located::NotFound => "not found",
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_owned_stream_is_served_at_once_under_every_policy() {
        let o = origin(Duration::from_secs(10));
        let _p = publish(&o, None);
        for policy in [Policy::OwnerOnly, Policy::Redirect, Policy::Relay] {
            let l = wait_for_publisher(&o, &key(), "h", policy).await;
            assert_eq!(outcome(&l), "here", "{policy:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_relayed_stream_serves_only_relaying_plays() {
        let o = origin(Duration::from_secs(2));
        let _p = publish(&o, Some("10.0.0.2:1935"));
        let l = wait_for_publisher(&o, &key(), "h", Policy::Relay).await;
        assert_eq!(outcome(&l), "here");
        // Another origin's relay and a redirected client wait for the owner: none comes
        // (and no coworker knows it), so both end at the deadline, not before, not never.
        for policy in [Policy::OwnerOnly, Policy::Redirect] {
            let start = tokio::time::Instant::now();
            let l = wait_for_publisher(&o, &key(), "h", policy).await;
            assert_eq!(outcome(&l), "not found", "{policy:?}");
            assert!(start.elapsed() >= Duration::from_secs(2), "{policy:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_publish_during_the_wait_is_found() {
        for policy in [Policy::OwnerOnly, Policy::Redirect, Policy::Relay] {
            let o = origin(Duration::from_secs(30));
            let waiting = {
                let o = o.clone();
                tokio::spawn(
                    async move { outcome(&wait_for_publisher(&o, &key(), "h", policy).await) },
                )
            };
            tokio::time::sleep(Duration::from_secs(3)).await;
            let _p = publish(&o, None);
            assert_eq!(waiting.await.unwrap(), "here", "{policy:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_anywhere_is_not_found_after_the_wait() {
        let o = origin(Duration::from_secs(5));
        let start = tokio::time::Instant::now();
        let l = wait_for_publisher(&o, &key(), "h", Policy::Relay).await;
        assert_eq!(outcome(&l), "not found");
        assert!(start.elapsed() >= Duration::from_secs(5));
    }
}
