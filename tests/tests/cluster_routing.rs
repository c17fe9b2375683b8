//! Origin-cluster routing with real processes (issue 3 acceptance): three origins on
//! loopback, ffmpeg publishing to one, players arriving at another.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use origin::client::{self, Client, ClientError, Event};
use origin::rtmp::amf0::Value;
use origin::rtmp::command;
use origin::rtmp::message::kind;
use origin_cluster_tests::*;

const TOKEN: &str = "s3cret-token";

/// Three origins with `--route redirect`: today's (SRS's) behaviour for every client.
/// Relay, the default, is tested in `relay.rs`.
fn cluster3() -> Vec<OriginProc> {
    start_cluster(
        3,
        &OriginOpts {
            token_file: Some(token_file(TOKEN)),
            extra: vec!["--route".into(), "redirect".into()],
            ..OriginOpts::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn rtmp_play_on_non_owner_gets_byte_exact_srs_302_and_follows_it() {
    let c = cluster3();
    let (a, b) = (&c[0], &c[1]);
    let _pub = b.publish_test_pattern("live/s", "320x240", 25, 30).await;

    let mut p = Client::connect(&a.rtmp_url("live/s")).await.unwrap();
    p.play(None).await.unwrap();
    let (msg, info) = loop {
        match tokio::time::timeout(Duration::from_secs(5), p.next_event())
            .await
            .unwrap()
            .unwrap()
        {
            Event::Status { message, info }
                if info.get("code").and_then(Value::as_str)
                    == Some("NetConnection.Connect.Rejected") =>
            {
                break (message, info);
            }
            Event::Media(_) => panic!("non-owner sent media"),
            _ => {}
        }
    };
    // docs/architecture.md, "RTMP 302": chunk stream 5, message stream id 0, AMF0 command, SRS's
    // exact bytes.
    assert_eq!(
        (msg.csid, msg.stream_id, msg.type_id),
        (5, 0, kind::COMMAND_AMF0)
    );
    let tc = format!("rtmp://127.0.0.1:{}/live", b.rtmp);
    let expected = command::redirect_302(&tc, &format!("{tc}/s"));
    assert_eq!(
        &msg.payload[..],
        &expected[..],
        "302 payload differs from SRS's"
    );
    assert_eq!(
        info.get("ex")
            .and_then(|e| e.get("code"))
            .and_then(Value::as_number),
        Some(302.0)
    );
    // The server closes after the client leaves (or within 3 s).
    drop(p);

    let (mut player, first, hops) = client::play_following_redirects(&a.rtmp_url("live/s"), 3)
        .await
        .unwrap();
    assert_eq!(hops, vec![format!("rtmp://127.0.0.1:{}/live/s", b.rtmp)]);
    assert!(first.type_id == kind::VIDEO || first.type_id == kind::AUDIO);
    player.next_media().await.unwrap();
    let metrics = http("GET", &a.api_url("/metrics"), &[], "").await.text();
    assert!(
        metrics.contains("origin_redirects_total{kind=\"rtmp\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ffprobe_plays_http_flv_via_a_non_owner_through_http_302() {
    let c = cluster3();
    let (a, b) = (&c[0], &c[2]);
    let _pub = b.publish_test_pattern("live/h", "640x360", 30, 30).await;
    let r = http("GET", &a.flv_url("live/h.flv"), &[], "").await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.headers["location"],
        format!("http://127.0.0.1:{}/live/h.flv", b.flv).as_str()
    );
    let url = a.flv_url("live/h.flv");
    let streams = tokio::task::spawn_blocking(move || ffprobe(&url))
        .await
        .unwrap()
        .unwrap();
    let v = streams.iter().find(|s| s.codec_type == "video").unwrap();
    assert_eq!(
        (v.codec_name.as_str(), v.width, v.height),
        ("h264", Some(640), Some(360))
    );
    assert!(streams.iter().any(|s| s.codec_name == "aac"));
}

#[tokio::test(flavor = "multi_thread")]
async fn clusters_api_answers_in_srs_shape_on_owner_and_non_owner() {
    let c = cluster3();
    let (a, b) = (&c[0], &c[1]);
    let _pub = b.publish_test_pattern("live/q", "320x240", 25, 30).await;
    for method in ["POST", "GET"] {
        // Exactly the request an SRS origin sends (unencoded).
        let q = format!(
            "vhost=__defaultVhost__&ip=127.0.0.1&app=live&stream=q&coworker=127.0.0.1:{}",
            b.api
        );
        let owned = http(
            method,
            &b.api_url(&format!("/api/v1/clusters?{q}")),
            &[],
            "",
        )
        .await;
        assert_eq!(owned.status, 200);
        assert_eq!(owned.headers["content-type"], "application/json");
        // SRS's key order, read off the raw text (a JSON map does not keep order).
        let text = owned.text();
        let order = [
            "{\"code\":0,\"data\":{\"query\":{\"ip\":",
            "\"vhost\":",
            "\"app\":",
            "\"stream\":",
            "},\"origin\":{\"ip\":",
            "\"port\":",
            "\"vhost\":",
            "\"api\":",
            "\"routers\":[",
        ];
        let mut at = 0;
        for k in order {
            let i = text[at..]
                .find(k)
                .unwrap_or_else(|| panic!("`{k}` out of SRS order in {text}"));
            at += i + k.len();
        }
        let v = owned.json();
        assert_eq!(v.as_object().unwrap().len(), 2);
        assert_eq!(v["code"], 0);
        assert_eq!(
            v["data"]["query"],
            serde_json::json!({"ip":"127.0.0.1","vhost":"__defaultVhost__","app":"live","stream":"q"})
        );
        let o = &v["data"]["origin"];
        assert_eq!(o["ip"], "127.0.0.1");
        assert!(o["port"].is_u64(), "port must be a JSON integer");
        assert_eq!(o["port"], b.rtmp);
        assert_eq!(o["vhost"], "__defaultVhost__");
        assert_eq!(o["api"], format!("127.0.0.1:{}", b.api));
        assert_eq!(
            o["routers"],
            serde_json::json!([format!("127.0.0.1:{}", b.api)])
        );
        assert_eq!(o["http"], format!("127.0.0.1:{}", b.flv));

        let not = http(
            method,
            &a.api_url(&format!("/api/v1/clusters?{q}")),
            &[],
            "",
        )
        .await;
        assert_eq!(not.status, 200);
        assert_eq!(
            not.text(),
            r#"{"code":0,"data":{"query":{"ip":"127.0.0.1","vhost":"__defaultVhost__","app":"live","stream":"q"},"origin":null}}"#
        );
    }
    // Stream extension ignored, encoded parameters decoded, JSONP supported.
    let r = http(
        "GET",
        &b.api_url("/api/v1/clusters?app=live&stream=q.flv&callback=cb"),
        &[],
        "",
    )
    .await;
    assert_eq!(r.headers["content-type"], "text/javascript");
    assert!(r.text().starts_with("cb({\"code\":0,") && r.text().ends_with("})"));
    assert!(r.text().contains(&format!("\"port\":{}", b.rtmp)));
    let r = http(
        "GET",
        &b.api_url("/api/v1/clusters?app=li%76e&stream=%71"),
        &[],
        "",
    )
    .await
    .json();
    assert!(r["data"]["origin"].is_object());
}

#[tokio::test(flavor = "multi_thread")]
async fn publishing_a_name_another_origin_has_is_refused() {
    let c = cluster3();
    let (a, b) = (&c[0], &c[1]);
    let _pub = b.publish_test_pattern("live/own", "320x240", 25, 30).await;
    let mut p = Client::connect(&a.rtmp_url("live/own")).await.unwrap();
    match p.publish(None).await {
        Err(ClientError::Status { code, description }) => {
            assert_eq!(code, "NetStream.Publish.BadName");
            assert!(
                description.contains(&format!("127.0.0.1:{}", b.rtmp)),
                "description names the owner: {description}"
            );
        }
        other => panic!("publish on a non-owner was accepted: {other:?}"),
    }
    // A different name is fine.
    let mut ok = Client::connect(&a.rtmp_url("live/other")).await.unwrap();
    ok.publish(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn player_arriving_before_its_publisher_gets_the_stream() {
    let c = cluster3();
    let (a, b) = (&c[0], &c[1]);
    // RTMP player on A and HTTP-FLV player on A; the publisher comes to B 2 s later.
    let rtmp = tokio::spawn({
        let url = a.rtmp_url("live/late");
        async move { client::play_following_redirects(&url, 3).await }
    });
    let flv = tokio::spawn({
        let url = a.flv_url("live/late.flv");
        async move { http("GET", &url, &[], "").await }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _pub = ffmpeg_publish(&b.rtmp_url("live/late"), "320x240", 25, 30);
    let (_c, first, hops) = tokio::time::timeout(Duration::from_secs(10), rtmp)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(hops.len(), 1, "redirected once to the owner");
    assert!(first.type_id == kind::VIDEO || first.type_id == kind::AUDIO);
    let r = tokio::time::timeout(Duration::from_secs(10), flv)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, 302);

    // Same origin: the player simply starts when the publish lands.
    let local = tokio::spawn({
        let url = b.rtmp_url("live/late2");
        async move {
            let mut p = Client::connect(&url).await?;
            p.play(None).await?;
            p.next_media().await
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _pub2 = ffmpeg_publish(&b.rtmp_url("live/late2"), "320x240", 25, 30);
    let m = tokio::time::timeout(Duration::from_secs(10), local)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(m.type_id == kind::VIDEO || m.type_id == kind::AUDIO);
}

#[tokio::test(flavor = "multi_thread")]
async fn player_gets_stream_not_found_after_wait_for_publisher() {
    let c = start_cluster(
        2,
        &OriginOpts {
            extra: vec!["--wait-for-publisher".into(), "1s".into()],
            ..OriginOpts::default()
        },
    );
    let started = Instant::now();
    let mut p = Client::connect(&c[0].rtmp_url("live/nobody"))
        .await
        .unwrap();
    p.play(None).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(10), p.next_media())
        .await
        .unwrap()
    {
        Err(ClientError::Status { code, .. }) => assert_eq!(code, "NetStream.Play.StreamNotFound"),
        other => panic!("expected StreamNotFound, got {other:?}"),
    }
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "held for wait_for_publisher"
    );
    let r = http("GET", &c[1].flv_url("live/nobody.flv"), &[], "").await;
    assert_eq!(r.status, 404);
    assert!(r.text().contains("not published"));
}

#[tokio::test(flavor = "multi_thread")]
async fn black_holed_coworker_does_not_delay_the_redirect() {
    let (_hole, hole) = black_hole();
    // Long, so that waiting for the black hole shows also on a loaded machine.
    let timeout = Duration::from_secs(10);
    let c = start_cluster(
        2,
        &OriginOpts {
            coworkers: vec![hole.to_string()],
            extra: vec![
                "--route".into(),
                "redirect".into(),
                "--discovery-timeout".into(),
                "10s".into(),
                "--discovery-cache".into(),
                "0s".into(),
            ],
            ..OriginOpts::default()
        },
    );
    let (a, b) = (&c[0], &c[1]);
    let _pub = b.publish_test_pattern("live/bh", "320x240", 25, 30).await;
    for _ in 0..3 {
        let t = Instant::now();
        let r = http("GET", &a.flv_url("live/bh.flv"), &[], "").await;
        let took = t.elapsed();
        assert_eq!(r.status, 302);
        // Asked concurrently: the owner's answer wins long before the black hole times out.
        assert!(
            took < timeout / 2,
            "redirect took {took:?} with a black-holed coworker"
        );
    }
    // The publish guard is not held hostage either: a new name publishes at once.
    let t = Instant::now();
    let mut p = Client::connect(&a.rtmp_url("live/fresh")).await.unwrap();
    p.publish(None).await.unwrap();
    assert!(
        t.elapsed() <= timeout + Duration::from_secs(5),
        "publish waited {:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn coworker_admin_api_checks_token_revision_and_body() {
    let o = OriginProc::start(&OriginOpts {
        token_file: Some(token_file(TOKEN)),
        coworkers: vec!["127.0.0.1:1".into()],
        ..OriginOpts::default()
    });
    let url = o.api_url("/api/v1/coworkers");
    let before = http("GET", &url, &[], "").await.json();
    assert_eq!(
        (before["revision"].as_u64(), before["source"].as_str()),
        (Some(0), Some("flags"))
    );
    let doc = r#"{"revision":5,"coworkers":["127.0.0.1:2001","127.0.0.1:2002"],"advertise":null}"#;
    let wrong = http("PUT", &url, &[("authorization", "Bearer nope")], doc).await;
    assert_eq!(wrong.status, 401);
    let missing = http("PUT", &url, &[], doc).await;
    assert_eq!(missing.status, 401);
    assert_eq!(
        http("GET", &url, &[], "").await.json(),
        before,
        "a refused PUT changes nothing"
    );

    let auth = format!("Bearer {TOKEN}");
    let ok = http("PUT", &url, &[("authorization", &auth)], doc).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let now = http("GET", &url, &[], "").await.json();
    assert_eq!(now["revision"], 5);
    assert_eq!(now["source"], "api");
    assert_eq!(
        now["coworkers"],
        serde_json::json!(["127.0.0.1:2001", "127.0.0.1:2002"])
    );
    let stale = http(
        "PUT",
        &url,
        &[("authorization", &auth)],
        r#"{"revision":4,"coworkers":[]}"#,
    )
    .await;
    assert_eq!(stale.status, 409);
    assert_eq!(stale.json()["revision"], 5);
    let bad = http(
        "PUT",
        &url,
        &[("authorization", &auth)],
        r#"{"revision":6,"coworkers":["no-port"]}"#,
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"].as_str().unwrap().contains("no-port"));
    assert_eq!(http("GET", &url, &[], "").await.json()["revision"], 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_and_a_killed_coworker_do_not_delay_finding_the_owner() {
    // Real coworker origins, not stand-ins: origin 0 frozen by SIGSTOP (its listening
    // sockets still accept, nothing answers), origin 1 killed by SIGKILL (refused).
    let timeout = Duration::from_secs(3);
    let mut c = start_cluster(
        4,
        &OriginOpts {
            token_file: Some(token_file(TOKEN)),
            extra: ["--route", "redirect", "--discovery-cache", "0s"]
                .into_iter()
                .map(String::from)
                .chain([
                    "--discovery-timeout".into(),
                    format!("{}s", timeout.as_secs()),
                ])
                .collect(),
            ..OriginOpts::default()
        },
    );
    let _pub = c[3]
        .publish_test_pattern("live/fk", "320x240", 25, 60)
        .await;
    let frozen = c[0].pid();
    let _thaw = Thaw(frozen);
    signal(frozen, "STOP");
    c[1].kill();
    let (asker, owner) = (&c[2], &c[3]);
    for _ in 0..3 {
        let t = Instant::now();
        let r = http("GET", &asker.flv_url("live/fk.flv"), &[], "").await;
        let took = t.elapsed();
        println!("HTTP-FLV 302 past a frozen and a killed coworker in {took:?}");
        assert_eq!(r.status, 302);
        assert_eq!(
            r.headers["location"],
            format!("http://127.0.0.1:{}/live/fk.flv", owner.flv).as_str()
        );
        // Asked concurrently: the owner's answer wins before the frozen peer times out.
        assert!(
            took < timeout,
            "the owner was found in {took:?}, not within the discovery timeout"
        );
    }
    let t = Instant::now();
    let (mut player, first, hops) = client::play_following_redirects(&asker.rtmp_url("live/fk"), 3)
        .await
        .unwrap();
    let took = t.elapsed();
    println!("RTMP 302 and first media past a frozen and a killed coworker in {took:?}");
    assert_eq!(hops, vec![owner.rtmp_url("live/fk")]);
    assert!(first.type_id == kind::VIDEO || first.type_id == kind::AUDIO);
    player.next_media().await.unwrap();
}
