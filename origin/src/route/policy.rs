//! The pure part of routing: given what this origin has of a stream, whether a coworker
//! owns it, and the route mode, what a play does. No I/O, no clock.
//! See docs/architecture.md, "Play flow and routing".

use crate::config::Route;

/// How one play treats a stream this origin does not own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// A relay of another origin: only a real publisher here will do. Never asks
    /// coworkers, never relays or redirects onward (no loops, no chains).
    OwnerOnly,
    /// Serve only what this origin owns; send the client to the owner of the rest.
    Redirect,
    /// Serve what is published here (owned or relayed); relay the rest from its owner.
    Relay,
}

/// What the client is, as far as routing cares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientKind {
    /// Another origin of this cluster relaying the stream.
    pub relay: bool,
    /// An SRS edge (it follows the RTMP 302).
    pub srs_edge: bool,
    /// The client asked for redirects (`redirect=302`).
    pub opted_in: bool,
}

impl Policy {
    /// `--route redirect` always redirects, `relay` never, `auto` redirects SRS edges and
    /// `redirect=302` opt-ins; a relaying origin is never sent on.
    pub fn new(mode: Route, client: ClientKind) -> Self {
        if client.relay {
            return Policy::OwnerOnly;
        }
        let redirect = match mode {
            Route::Redirect => true,
            Route::Relay => false,
            Route::Auto => client.srs_edge || client.opted_in,
        };
        if redirect {
            Policy::Redirect
        } else {
            Policy::Relay
        }
    }

    /// Whether a play under this policy asks coworkers who owns the stream.
    pub fn asks_coworkers(self) -> bool {
        self != Policy::OwnerOnly
    }
}

/// What this origin has of a stream right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Here {
    /// No publisher (yet).
    Nothing,
    /// Published here by a relay of a coworker's stream.
    Relayed,
    /// Published here by its encoder: this origin owns it.
    Owned,
}

/// What a play does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Play from the stream here.
    Serve,
    /// Relay the owner's stream here and play from it.
    Relay,
    /// Send the client to the owner.
    Redirect,
    /// Nothing to do yet: wait for a publisher (or for the deadline).
    Wait,
}

/// The routing decision. `owner_elsewhere`: a coworker said it owns the stream.
pub fn decide(policy: Policy, here: Here, owner_elsewhere: bool) -> Step {
    match (policy, here, owner_elsewhere) {
        (_, Here::Owned, _) => Step::Serve,
        (Policy::Relay, Here::Relayed, _) => Step::Serve,
        (Policy::OwnerOnly, _, _) => Step::Wait,
        (Policy::Redirect, _, true) => Step::Redirect,
        (Policy::Relay, _, true) => Step::Relay,
        (_, _, false) => Step::Wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: ClientKind = ClientKind {
        relay: false,
        srs_edge: false,
        opted_in: false,
    };

    #[test]
    fn policy_from_mode_and_client() {
        let edge = ClientKind {
            srs_edge: true,
            ..PLAIN
        };
        let opted = ClientKind {
            opted_in: true,
            ..PLAIN
        };
        let relay = ClientKind {
            relay: true,
            srs_edge: true,
            opted_in: true,
        };
        assert_eq!(Policy::new(Route::Auto, PLAIN), Policy::Relay);
        assert_eq!(Policy::new(Route::Auto, edge), Policy::Redirect);
        assert_eq!(Policy::new(Route::Auto, opted), Policy::Redirect);
        assert_eq!(Policy::new(Route::Relay, edge), Policy::Relay);
        assert_eq!(Policy::new(Route::Relay, opted), Policy::Relay);
        assert_eq!(Policy::new(Route::Redirect, PLAIN), Policy::Redirect);
        // A relaying origin is never sent on, whatever the mode.
        for mode in [Route::Auto, Route::Relay, Route::Redirect] {
            assert_eq!(Policy::new(mode, relay), Policy::OwnerOnly);
        }
        assert!(!Policy::OwnerOnly.asks_coworkers());
        assert!(Policy::Relay.asks_coworkers() && Policy::Redirect.asks_coworkers());
    }

    #[test]
    fn an_owned_stream_is_served_here_under_every_policy() {
        for p in [Policy::OwnerOnly, Policy::Redirect, Policy::Relay] {
            for elsewhere in [false, true] {
                assert_eq!(decide(p, Here::Owned, elsewhere), Step::Serve, "{p:?}");
            }
        }
    }

    #[test]
    fn a_relayed_stream_is_served_only_to_relaying_policies() {
        assert_eq!(decide(Policy::Relay, Here::Relayed, false), Step::Serve);
        assert_eq!(decide(Policy::Relay, Here::Relayed, true), Step::Serve);
        // A redirected client goes to the owner, not to our copy.
        assert_eq!(
            decide(Policy::Redirect, Here::Relayed, true),
            Step::Redirect
        );
        assert_eq!(decide(Policy::Redirect, Here::Relayed, false), Step::Wait);
        // Another origin's relay never plays a relay (no chains).
        assert_eq!(decide(Policy::OwnerOnly, Here::Relayed, true), Step::Wait);
    }

    #[test]
    fn a_coworkers_stream_is_relayed_or_redirected() {
        assert_eq!(decide(Policy::Relay, Here::Nothing, true), Step::Relay);
        assert_eq!(
            decide(Policy::Redirect, Here::Nothing, true),
            Step::Redirect
        );
        assert_eq!(decide(Policy::OwnerOnly, Here::Nothing, true), Step::Wait);
    }

    #[test]
    fn an_unknown_stream_waits() {
        for p in [Policy::OwnerOnly, Policy::Redirect, Policy::Relay] {
            assert_eq!(decide(p, Here::Nothing, false), Step::Wait, "{p:?}");
        }
    }
}
