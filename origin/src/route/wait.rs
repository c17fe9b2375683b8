//! Waiting for a play's publisher: the one loop that looks here, asks coworkers, and
//! waits until `--wait-for-publisher` runs out. Its cost per waiting play is decided here
//! and nowhere else: a play that must wait counts its name against its client's address
//! (`--max-waiting-names-per-ip`), holds a publish watch instead of a stream (no ring until
//! a publisher is there), and re-asks coworkers only within `--owner-query-rate`.
//! See docs/architecture.md, "Limits and hostile input".

use std::net::IpAddr;
use std::time::Duration;

use super::policy::{Here, Policy, Step, decide};
use crate::cluster::Found;
use crate::media::{Player, StreamKey};
use crate::state::Origin;

/// How often a relaying origin's play re-checks a stream only a relay publishes here
/// (its replacement by the real publisher is a publish, but a missed wake costs little).
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
    /// The client's address already waits for `--max-waiting-names-per-ip` other names.
    TooManyWaiting,
}

/// What `key` has here right now.
fn here(origin: &Origin, key: &StreamKey) -> Here {
    match origin.registry.get(key).and_then(|s| s.publisher()) {
        Some(p) if p.upstream.is_none() => Here::Owned,
        Some(_) => Here::Relayed,
        None => Here::Nothing,
    }
}

/// Finds a play's stream under `policy`: here, on a coworker (its directory origins
/// asked first, then all coworkers concurrently when they do not know it, see
/// docs/architecture.md, "Ownership directory"; every `--reask-interval` within the
/// query budget), or wherever it shows up first
/// within `--wait-for-publisher`. `host` is the host the client addressed (echoed in
/// ownership queries); a wait counts against `counted`, the client's address (`None` for
/// the cluster's own origins). Dropping the future at any point releases everything it
/// held.
pub async fn wait_for_publisher(
    origin: &Origin,
    key: &StreamKey,
    host: &str,
    policy: Policy,
    counted: Option<IpAddr>,
) -> Located {
    let join = || origin.registry.play(key, origin.play_config());
    if decide(policy, here(origin, key), false) == Step::Serve {
        return Located::Here(join());
    }
    let _waiting = match counted.map(|ip| origin.waiting_names.admit(ip, &key.to_string())) {
        Some(Err(_)) => return Located::TooManyWaiting,
        guard => guard,
    };
    let watch = origin.registry.watch_publish(key);
    let deadline = tokio::time::Instant::now() + origin.config.wait_for_publisher;
    let interval = match policy {
        Policy::OwnerOnly => OWNER_RECHECK,
        Policy::Redirect | Policy::Relay => origin.config.reask_interval,
    };
    let mut first_round = true;
    loop {
        // Armed before the look, so a publish in between still wakes us.
        let published = watch.published();
        tokio::pin!(published);
        published.as_mut().enable();
        if decide(policy, here(origin, key), false) == Step::Serve {
            return Located::Here(join());
        }
        if policy.asks_coworkers() && may_ask(origin, key, interval, &mut first_round) {
            let peers = origin.coworkers.peers();
            if let Some(found) = origin.discovery.find_owner(&peers, key, host).await {
                match decide(policy, here(origin, key), true) {
                    Step::Serve => return Located::Here(join()),
                    Step::Relay => {
                        let player = join();
                        return Located::Relay { found, player };
                    }
                    Step::Redirect => return Located::Redirect(found),
                    Step::Wait => {}
                }
            }
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Located::NotFound;
        }
        tokio::select! {
            _ = tokio::time::sleep_until((now + interval).min(deadline)) => {}
            _ = published => {}
        }
    }
}

/// Whether this turn may send a round of ownership queries: the first always may; a
/// re-ask only if no play of the name asked within the last `interval` (plays waiting
/// for one name share one round per interval) and within the origin's query budget.
fn may_ask(origin: &Origin, key: &StreamKey, interval: Duration, first_round: &mut bool) -> bool {
    if std::mem::take(first_round) {
        origin.query_budget.first_round();
        true
    } else {
        !origin.discovery.missed_within(key, interval) && origin.query_budget.try_reask()
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
        origin_with(Config {
            wait_for_publisher: wait,
            ..Config::default()
        })
    }

    fn origin_with(config: Config) -> Arc<Origin> {
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
            Located::TooManyWaiting => "too many waiting",
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_owned_stream_is_served_at_once_under_every_policy() {
        let o = origin(Duration::from_secs(10));
        let _p = publish(&o, None);
        for policy in [Policy::OwnerOnly, Policy::Redirect, Policy::Relay] {
            let l = wait_for_publisher(&o, &key(), "h", policy, None).await;
            assert_eq!(outcome(&l), "here", "{policy:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_relayed_stream_serves_only_relaying_plays() {
        let o = origin(Duration::from_secs(2));
        let _p = publish(&o, Some("10.0.0.2:1935"));
        let l = wait_for_publisher(&o, &key(), "h", Policy::Relay, None).await;
        assert_eq!(outcome(&l), "here");
        // Another origin's relay and a redirected client wait for the owner: none comes
        // (and no coworker knows it), so both end at the deadline, not before, not never.
        for policy in [Policy::OwnerOnly, Policy::Redirect] {
            let start = tokio::time::Instant::now();
            let l = wait_for_publisher(&o, &key(), "h", policy, None).await;
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
                tokio::spawn(async move {
                    outcome(&wait_for_publisher(&o, &key(), "h", policy, None).await)
                })
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
        let l = wait_for_publisher(&o, &key(), "h", Policy::Relay, None).await;
        assert_eq!(outcome(&l), "not found");
        assert!(start.elapsed() >= Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_play_holds_a_watch_not_a_stream() {
        let o = origin(Duration::from_secs(30));
        let waiting = {
            let o = o.clone();
            tokio::spawn(async move {
                outcome(&wait_for_publisher(&o, &key(), "h", Policy::Relay, None).await)
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            o.registry.len(),
            0,
            "no stream (and no ring) while it waits"
        );
        assert_eq!(o.registry.waiting_counts(), (1, 1));
        let _p = publish(&o, None);
        assert_eq!(waiting.await.unwrap(), "here");
        assert_eq!(o.registry.waiting_counts(), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_names_are_capped_per_address_and_cluster_members_are_not_counted() {
        let o = origin_with(Config {
            wait_for_publisher: Duration::from_secs(30),
            max_waiting_names_per_ip: 2,
            ..Config::default()
        });
        let client: std::net::IpAddr = "192.0.2.7".parse().unwrap();
        let other: std::net::IpAddr = "192.0.2.8".parse().unwrap();
        let wait = |ip: Option<std::net::IpAddr>, name: &'static str| {
            let o = o.clone();
            tokio::spawn(async move {
                let key = StreamKey::new(origin_wire::DEFAULT_VHOST, "live", name);
                outcome(&wait_for_publisher(&o, &key, "h", Policy::Relay, ip).await)
            })
        };
        let a = wait(Some(client), "a");
        let b = wait(Some(client), "b");
        tokio::time::sleep(Duration::from_millis(10)).await;
        // A third name from the same address is refused at once; more plays of a name it
        // waits for already, other addresses and the cluster's origins are not affected.
        assert_eq!(wait(Some(client), "c").await.unwrap(), "too many waiting");
        let a2 = wait(Some(client), "a");
        let d = wait(Some(other), "d");
        let e = wait(None, "e");
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(o.registry.waiting_counts(), (4, 5));
        // A published stream is served at once, whatever the address's count.
        let _p = publish(&o, None);
        let cam = wait(Some(client), "cam");
        assert_eq!(cam.await.unwrap(), "here");
        // When the waits end, the address may wait again.
        for h in [a, a2, b, d, e] {
            assert_eq!(h.await.unwrap(), "not found");
        }
        let again = wait(Some(client), "c");
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(o.registry.waiting_counts(), (1, 1));
        again.abort();
    }
}
