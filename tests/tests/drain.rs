//! Drain (issue 5): what a pod's preStop (`origin drain --wait`) does to an origin.

#![forbid(unsafe_code)]

use std::process::Command;
use std::time::{Duration, Instant};

use origin::client::{Client, ClientError};
use origin_cluster_tests::*;

#[tokio::test(flavor = "multi_thread")]
async fn drain_refuses_publishes_keeps_players_then_ends_publishers() {
    let token = token_file("drain-token");
    let o = OriginProc::start(&OriginOpts {
        token_file: Some(token.clone()),
        // Long enough that the checks during the grace run inside it on a loaded machine.
        extra: vec!["--drain-grace".into(), "10s".into()],
        ..OriginOpts::default()
    });
    let mut publisher = o.publish_test_pattern("live/d", "320x240", 25, 60).await;
    let mut player = Client::connect(&o.rtmp_url("live/d")).await.unwrap();
    player.play(None).await.unwrap();
    assert_eq!(
        http("GET", &o.api_url("/readyz"), &[], "").await.status,
        200
    );

    // Without the token the drain is refused and nothing changes.
    assert_eq!(
        http("POST", &o.api_url("/api/v1/drain"), &[], "")
            .await
            .status,
        401
    );
    assert_eq!(
        http("GET", &o.api_url("/readyz"), &[], "").await.status,
        200
    );

    // The preStop hook: `origin drain --wait` returns once the publisher is gone.
    let started = Instant::now();
    let mut hook = Command::new(bin_path("origin"))
        .args([
            "drain",
            "--wait",
            "--api",
            &o.api_addr(),
            "--drain-grace",
            "10s",
        ])
        .arg("--admin-token-file")
        .arg(&token)
        .spawn()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(8);
    while http("GET", &o.api_url("/readyz"), &[], "").await.status != 503 {
        assert!(
            Instant::now() < deadline,
            "/readyz still succeeds while draining"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // New publishes are refused.
    let mut newcomer = Client::connect(&o.rtmp_url("live/new")).await.unwrap();
    match newcomer.publish(None).await {
        Err(ClientError::Status { code, .. }) => assert_eq!(code, "NetStream.Publish.Denied"),
        other => panic!("publish during drain accepted: {other:?}"),
    }
    // The existing player keeps receiving media during the grace.
    for frame in 0..50 {
        let m = tokio::time::timeout(Duration::from_secs(3), player.next_media()).await;
        assert!(
            matches!(m, Ok(Ok(_))),
            "player starved during drain after {frame} frames: {m:?}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the grace was over before the player's frames were checked"
    );

    // After the grace the publisher is ended (the encoder sees its connection close).
    let status = publisher
        .wait_timeout(Duration::from_secs(30))
        .expect("publisher not ended after the grace");
    assert!(!status.success());
    assert!(
        started.elapsed() >= Duration::from_secs(10),
        "publisher ended before the grace: {:?}",
        started.elapsed()
    );
    let hook_status = tokio::task::spawn_blocking(move || hook.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(hook_status.success(), "drain --wait failed");
    let streams = http("GET", &o.api_url("/api/v1/streams"), &[], "")
        .await
        .json();
    assert_eq!(streams["draining"], true);
    assert!(
        streams["streams"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["publishing"] == false)
    );
    assert_eq!(
        http("GET", &o.api_url("/readyz"), &[], "").await.status,
        503
    );
    assert_eq!(
        http("GET", &o.api_url("/healthz"), &[], "").await.status,
        200
    );
}
