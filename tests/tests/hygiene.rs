//! Limits and process hygiene: the connection limit, graceful SIGTERM, a TOML config file
//! and JSON logs.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use origin::client::Client;
use origin_cluster_tests::*;
use tokio::io::AsyncReadExt;

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_the_limit_are_closed_and_counted() {
    let o = OriginProc::start(&OriginOpts {
        extra: vec!["--max-connections".into(), "2".into()],
        ..OriginOpts::default()
    });
    let _a = Client::connect(&o.rtmp_url("live/a")).await.unwrap();
    let _b = Client::connect(&o.rtmp_url("live/b")).await.unwrap();
    let mut third = tokio::net::TcpStream::connect(("127.0.0.1", o.rtmp))
        .await
        .unwrap();
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("closed at once")
        .unwrap_or(0);
    assert_eq!(n, 0, "the connection over the limit was served");
    let metrics = http("GET", &o.api_url("/metrics"), &[], "").await.text();
    assert!(
        metrics.contains("origin_connections_rejected_total{reason=\"max_connections\"} 1"),
        "{metrics}"
    );
    // HTTP-FLV players count against the same limit.
    let flv = http("GET", &o.flv_url("live/a.flv"), &[], "").await;
    assert_eq!(flv.status, 503, "{}", flv.text());
    // Under the limit again once one leaves.
    // (The origin notices the hang-up a little later: retry until it has.)
    drop(_a);
    let deadline = Instant::now() + Duration::from_secs(15);
    let _c = loop {
        match Client::connect(&o.rtmp_url("live/c")).await {
            Ok(c) => break c,
            Err(e) => assert!(
                Instant::now() < deadline,
                "still refused 15 s after a connection left: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_accepting_serves_players_through_the_grace_then_exits() {
    let o = OriginProc::start(&OriginOpts {
        extra: vec!["--shutdown-grace".into(), "10s".into()],
        ..OriginOpts::default()
    });
    let _pub = o.publish_test_pattern("live/t", "320x240", 25, 30).await;
    let mut player = Client::connect(&o.rtmp_url("live/t")).await.unwrap();
    player.play(None).await.unwrap();
    player.next_media().await.unwrap();
    let started = Instant::now();
    o.terminate();
    // New connections are refused promptly, /readyz would fail, the player still gets media.
    // (Well inside the 10 s grace, after which nothing would accept anyway.)
    let deadline = Instant::now() + Duration::from_secs(6);
    while tokio::net::TcpStream::connect(("127.0.0.1", o.rtmp))
        .await
        .is_ok()
    {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..5 {
        tokio::time::timeout(Duration::from_secs(2), player.next_media())
            .await
            .unwrap()
            .unwrap();
    }
    // The grace ends the process, and with it the remaining connections.
    let ended = tokio::time::timeout(Duration::from_secs(25), async {
        while player.next_media().await.is_ok() {}
    })
    .await;
    assert!(ended.is_ok(), "connections not closed after the grace");
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "exited before the grace: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn toml_config_file_and_json_logs() {
    let rtmp = free_port();
    let api = free_port();
    let flv = free_port();
    let dir = std::env::temp_dir().join(format!("origin-conf-{}-{rtmp}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("origin.toml");
    std::fs::write(
        &conf,
        format!(
            "rtmp_listen = \"127.0.0.1:{rtmp}\"\napi_listen = \"127.0.0.1:{api}\"\nflv_listen = \"127.0.0.1:{flv}\"\n\
             coworkers = [\"127.0.0.1:1\"]\nwait_for_publisher = \"0s\"\nlog_format = \"json\"\n"
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(bin_path("origin"))
        .arg("serve")
        .arg("--config")
        .arg(&conf)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let up = wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", api)).ok()
    });
    assert!(
        up.is_some(),
        "origin did not listen on the configured API address"
    );
    let cw = http(
        "GET",
        &format!("http://127.0.0.1:{api}/api/v1/coworkers"),
        &[],
        "",
    )
    .await
    .json();
    assert_eq!(cw["coworkers"], serde_json::json!(["127.0.0.1:1"]));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let first = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let log: serde_json::Value = serde_json::from_str(&first)
        .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {first}"));
    assert_eq!(log["message"], "origin listening");
    assert_eq!(log["rtmp"], format!("127.0.0.1:{rtmp}"));
    let _ = std::fs::remove_dir_all(&dir);
    // A malformed config file is one clear error, not a panic.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&conf, "no_such_key = 1\n").unwrap();
    let out = std::process::Command::new(bin_path("origin"))
        .arg("serve")
        .arg("--config")
        .arg(&conf)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no_such_key") && !err.contains("panicked"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
