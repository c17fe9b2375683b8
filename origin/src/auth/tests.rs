//! The facade against a real HTTP hook server (axum on loopback).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::routing::post;

use super::*;

#[derive(Default)]
struct Seen {
    bodies: Vec<(String, serde_json::Value)>,
    peers: Vec<SocketAddr>,
}

type Shared = Arc<Mutex<Seen>>;

/// A hook backend: `/allow` allows, `/deny` denies, `/by-stream` allows only stream `ok`,
/// `/slow` answers after 30 s (far beyond any timeout or bound here), `/flaky` fails the first call with 500 then allows.
async fn backend() -> (SocketAddr, Shared) {
    let seen: Shared = Arc::default();
    async fn record(path: &str, seen: &Shared, peer: SocketAddr, body: &str) -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let mut s = seen.lock().unwrap();
        s.bodies.push((path.to_string(), v.clone()));
        s.peers.push(peer);
        v
    }
    type Ctx = (State<Shared>, ConnectInfo<SocketAddr>);
    let app = Router::new()
        .route(
            "/allow",
            post(|(State(s), ConnectInfo(p)): Ctx, b: String| async move {
                record("/allow", &s, p, &b).await;
                "0"
            }),
        )
        .route(
            "/deny",
            post(|(State(s), ConnectInfo(p)): Ctx, b: String| async move {
                record("/deny", &s, p, &b).await;
                r#"{"code": 403}"#
            }),
        )
        .route(
            "/by-stream",
            post(|(State(s), ConnectInfo(p)): Ctx, b: String| async move {
                let v = record("/by-stream", &s, p, &b).await;
                if v["stream"] == "ok" {
                    r#"{"code": 0}"#
                } else {
                    r#"{"code": 1}"#
                }
            }),
        )
        .route(
            "/slow",
            post(|(State(s), ConnectInfo(p)): Ctx, b: String| async move {
                record("/slow", &s, p, &b).await;
                tokio::time::sleep(Duration::from_secs(30)).await;
                "0"
            }),
        )
        .route(
            "/flaky",
            post(|(State(s), ConnectInfo(p)): Ctx, b: String| async move {
                record("/flaky", &s, p, &b).await;
                let n = s.lock().unwrap().bodies.len();
                if n == 1 {
                    (StatusCode::INTERNAL_SERVER_ERROR, "oops")
                } else {
                    (StatusCode::OK, "0")
                }
            }),
        )
        .route(
            "/huge",
            post(|| async {
                // A valid allow, padded past the answer size limit.
                format!(r#"{{"code":0,"pad":"{}"}}"#, "x".repeat(100 * 1024))
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    (addr, seen)
}

fn request(stream: &str) -> Request {
    Request {
        client_id: "42".into(),
        ip: Some("127.0.0.9".parse().unwrap()),
        vhost: origin_wire::DEFAULT_VHOST.into(),
        app: "live".into(),
        stream: stream.into(),
        param: "?token=abc".into(),
        tc_url: "rtmp://127.0.0.1:1935/live".into(),
        stream_id: "1".into(),
        ..Request::default()
    }
}

fn config(addr: SocketAddr, publish: &[&str], failure: HookFailure) -> AuthConfig {
    AuthConfig {
        on_publish: publish
            .iter()
            .map(|p| format!("http://{addr}{p}"))
            .collect(),
        on_play: vec![format!("http://{addr}/by-stream")],
        on_stop: vec![format!("http://{addr}/flaky")],
        hook_timeout: Duration::from_millis(300),
        hook_failure: failure,
        ..AuthConfig::default()
    }
}

#[tokio::test]
async fn hook_allows_and_denies_with_srs_bodies() {
    let (addr, seen) = backend().await;
    let auth = Auth::new(
        &config(addr, &["/allow"], HookFailure::Deny),
        None,
        "srv".into(),
    )
    .unwrap();
    auth.check(Event::Publish, &request("any")).await.unwrap();
    auth.check(Event::Play, &request("ok")).await.unwrap();
    let r = auth.check(Event::Play, &request("nope")).await.unwrap_err();
    assert_eq!(r.reason, "hook_denied");
    assert!(!r.description.contains("abc"));
    let s = seen.lock().unwrap();
    assert_eq!(s.bodies.len(), 3);
    let (_, publish) = &s.bodies[0];
    assert_eq!(publish["action"], "on_publish");
    assert_eq!(publish["param"], "?token=abc");
    assert_eq!(publish["ip"], "127.0.0.9");
    assert_eq!(publish["server_id"], "srv");
    assert_eq!(publish["stream_url"], "/live/any");
    let (_, play) = &s.bodies[1];
    assert_eq!(play["action"], "on_play");
    assert!(play.get("pageUrl").is_some());
    // Pooled: the calls reused one keep-alive connection.
    assert!(
        s.peers.iter().all(|p| *p == s.peers[0]),
        "connections: {:?}",
        s.peers
    );
}

#[tokio::test]
async fn urls_called_in_order_and_all_must_allow() {
    let (addr, seen) = backend().await;
    let auth = Auth::new(
        &config(addr, &["/allow", "/deny", "/allow"], HookFailure::Allow),
        None,
        "srv".into(),
    )
    .unwrap();
    let r = auth.check(Event::Publish, &request("s")).await.unwrap_err();
    assert_eq!(
        r.reason, "hook_denied",
        "an explicit denial ignores --hook-failure allow"
    );
    let paths: Vec<_> = seen
        .lock()
        .unwrap()
        .bodies
        .iter()
        .map(|(p, _)| p.clone())
        .collect();
    assert_eq!(paths, ["/allow", "/deny"], "stops at the first denial");
}

#[tokio::test]
async fn slow_or_down_hook_follows_the_failure_mode_within_the_timeout() {
    let (addr, _) = backend().await;
    // A port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    for (target, path) in [(addr, "/slow"), (dead, "/x")] {
        for failure in [HookFailure::Deny, HookFailure::Allow] {
            let auth = Auth::new(&config(target, &[path], failure), None, "s".into()).unwrap();
            let started = Instant::now();
            let r = auth.check(Event::Publish, &request("s")).await;
            let took = started.elapsed();
            // The timeout fired: long before the 30 s hook answers, not before 300 ms.
            assert!(
                took < Duration::from_secs(15),
                "{path}: took {took:?} with a 300 ms timeout"
            );
            if path == "/slow" {
                assert!(took >= Duration::from_millis(300), "{path}: {took:?}");
            }
            match failure {
                HookFailure::Deny => assert_eq!(r.unwrap_err().reason, "hook_failure"),
                HookFailure::Allow => r.unwrap(),
            }
        }
    }
}

#[tokio::test]
async fn notifications_are_retried_once() {
    let (addr, seen) = backend().await;
    let auth = Auth::new(&config(addr, &[], HookFailure::Deny), None, "srv".into()).unwrap();
    auth.notify(Event::Stop, request("s"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.lock().unwrap().bodies.len() < 2 {
        assert!(Instant::now() < deadline, "no retry seen");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let s = seen.lock().unwrap();
    assert_eq!(
        s.bodies.len(),
        2,
        "one call, one retry after the 500, no more"
    );
    assert_eq!(s.bodies[1].1["action"], "on_stop");
}

#[tokio::test]
async fn notification_backlog_is_bounded() {
    let (addr, _) = backend().await;
    let mut cfg = config(addr, &[], HookFailure::Deny);
    cfg.on_stop = vec![format!("http://{addr}/slow")];
    let auth = Auth::new(&cfg, None, "srv".into()).unwrap();
    let dropped = || {
        crate::metrics::global()
            .hook_calls
            .get_or_create(&crate::metrics::HookLabel {
                event: "on_stop",
                outcome: "dropped",
            })
            .get()
    };
    let before = dropped();
    let started = Instant::now();
    for _ in 0..hooks::NOTIFY_BACKLOG + 100 {
        auth.notify(Event::Stop, request("s"));
    }
    // Never waited for: the hook takes 30 s per call, and there are 10,100 calls.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "notify waited: {:?}",
        started.elapsed()
    );
    assert_eq!(
        dropped() - before,
        100,
        "beyond the backlog, dropped and counted"
    );
}

#[tokio::test]
async fn rules_come_first_and_cluster_members_skip_everything() {
    let (addr, seen) = backend().await;
    let dir = std::env::temp_dir().join(format!("auth-facade-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("auth.toml");
    std::fs::write(
        &file,
        "[[rule]]\naction = \"publish\"\nstream = \"live/*\"\nsecret = \"k\"\n",
    )
    .unwrap();
    let mut cfg = config(addr, &["/allow"], HookFailure::Deny);
    cfg.auth_file = Some(file);
    let auth = Auth::new(&cfg, Some("admin".into()), "srv".into()).unwrap();
    let r = auth.check(Event::Publish, &request("s")).await.unwrap_err();
    assert_eq!(r.reason, "auth_rules");
    assert!(
        seen.lock().unwrap().bodies.is_empty(),
        "no hook after a rule refusal"
    );
    let mut keyed = request("s");
    keyed.param = "?a=1&key=k".into();
    auth.check(Event::Publish, &keyed).await.unwrap();
    assert_eq!(seen.lock().unwrap().bodies.len(), 1, "then the hook");
    // A relay presenting the admin token: neither rules nor the owner's on_play.
    assert!(auth.is_cluster_member(Some("admin")));
    assert!(!auth.is_cluster_member(Some("admin2")) && !auth.is_cluster_member(None));
    let mut relay = request("nope");
    relay.cluster_member = true;
    auth.check(Event::Play, &relay).await.unwrap();
    auth.check(Event::Publish, &relay).await.unwrap();
    assert_eq!(seen.lock().unwrap().bodies.len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn oversized_answers_are_failures() {
    let (addr, _) = backend().await;
    for (failure, admitted) in [(HookFailure::Deny, false), (HookFailure::Allow, true)] {
        let auth = Auth::new(&config(addr, &["/huge"], failure), None, "s".into()).unwrap();
        let r = auth.check(Event::Publish, &request("s")).await;
        assert_eq!(r.is_ok(), admitted, "{r:?}");
        if let Err(r) = r {
            assert_eq!(r.reason, "hook_failure");
        }
    }
}

#[tokio::test]
async fn bad_urls_fail_at_start() {
    let cfg = AuthConfig {
        on_play: vec!["https://auth/hook?secret=zz".into()],
        ..AuthConfig::default()
    };
    let e = Auth::new(&cfg, None, "s".into()).err().unwrap().to_string();
    assert!(e.contains("on-play") && !e.contains("zz"), "{e}");
}
