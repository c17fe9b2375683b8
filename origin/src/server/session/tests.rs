use proptest::prelude::*;

use super::*;
use crate::route::ClientKind;

fn command(name: &str, txn: f64, object: Value, args: Vec<Value>) -> Command {
    Command {
        name: name.into(),
        transaction: txn,
        object,
        args,
    }
}

fn connect_cmd(app: &str) -> Input {
    let object = Value::object([
        ("app", Value::str(app)),
        ("flashVer", Value::str("LNX 9,0,124,2")),
        (
            "tcUrl",
            Value::str(format!("rtmp://origin.example:1935/{app}")),
        ),
        ("objectEncoding", Value::Number(0.0)),
    ]);
    Input::Command {
        cmd: command("connect", 1.0, object, vec![]),
        stream_id: 0,
    }
}

fn named(name: &str, txn: f64, stream: &str, stream_id: u32) -> Input {
    Input::Command {
        cmd: command(name, txn, Value::Null, vec![Value::str(stream)]),
        stream_id,
    }
}

fn bare(name: &str, txn: f64) -> Input {
    Input::Command {
        cmd: command(name, txn, Value::Null, vec![]),
        stream_id: 0,
    }
}

fn drain(s: &mut Session) -> Vec<Action> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

fn client() -> Client {
    Client {
        id: "7".into(),
        host: "origin.example".into(),
        tc_url: "rtmp://origin.example:1935/live".into(),
        ..Client::default()
    }
}

/// What a sent command message says: its name and, for `onStatus`/`_error`, the code.
fn said(action: &Action) -> (String, Option<String>) {
    let Action::Send(m) = action else {
        panic!("not a message: {action:?}");
    };
    let cmd = command::parse(m.type_id, &m.payload).expect("a command");
    let code = cmd
        .args
        .first()
        .and_then(|info| info.get("code"))
        .and_then(Value::as_str)
        .map(str::to_string);
    (cmd.name, code)
}

fn code(action: &Action) -> String {
    said(action).1.unwrap_or_default()
}

/// A session after an accepted `connect` to `live`, its actions drained.
fn connected() -> Session {
    let mut s = Session::new();
    s.handle(connect_cmd("live")).unwrap();
    drain(&mut s);
    s.handle(Input::ConnectChecked(Ok(client()))).unwrap();
    drain(&mut s);
    s
}

#[test]
fn connect_is_checked_then_answered_like_before() {
    let mut s = Session::new();
    s.handle(connect_cmd("live?vhost=v1")).unwrap();
    let actions = drain(&mut s);
    let [Action::AuthorizeConnect(info)] = actions.as_slice() else {
        panic!("expected one check, got {actions:?}");
    };
    assert_eq!(info.app, "live");
    assert_eq!(info.vhost, "v1");
    assert_eq!(info.tc.host, "origin.example");
    assert!(!info.srs_edge && !info.claims_relay);
    s.handle(Input::ConnectChecked(Ok(client()))).unwrap();
    let actions = drain(&mut s);
    let controls: Vec<_> = actions[..3]
        .iter()
        .map(|a| match a {
            Action::Send(m) => (m.csid, m.type_id),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        controls,
        [
            (csid::CONTROL, kind::WINDOW_ACK_SIZE),
            (csid::CONTROL, kind::SET_PEER_BANDWIDTH),
            (csid::CONTROL, kind::SET_CHUNK_SIZE)
        ]
    );
    assert_eq!(actions[3], Action::SetChunkSize(OUT_CHUNK_SIZE));
    assert_eq!(
        actions[4],
        Action::Send(Message {
            csid: csid::COMMAND,
            type_id: kind::COMMAND_AMF0,
            stream_id: 0,
            payload: command::connect_result(1.0, 0.0),
        })
    );
    assert_eq!(actions.len(), 5);
    assert_eq!(s.client(), Some(&client()));
}

#[test]
fn a_refused_or_invalid_connect_is_rejected_and_closed() {
    let mut s = Session::new();
    s.handle(connect_cmd("live")).unwrap();
    drain(&mut s);
    s.handle(Input::ConnectChecked(Err("go away".into())))
        .unwrap();
    let actions = drain(&mut s);
    assert_eq!(
        said(&actions[0]),
        ("_error".into(), Some(status::CONNECT_REJECTED.into()))
    );
    assert_eq!(actions[1..], [Action::Close]);
    assert_eq!(s.client(), None);
    // Nothing goes in after the close.
    assert_eq!(
        s.handle(bare("createStream", 2.0)),
        Err(SessionError::Closed)
    );

    let mut s = Session::new();
    s.handle(connect_cmd("../etc")).unwrap();
    let actions = drain(&mut s);
    assert_eq!(code(&actions[0]), status::CONNECT_REJECTED);
    assert_eq!(actions[1..], [Action::Close]);
}

#[test]
fn the_srs_edge_fingerprint_and_our_relays_are_recognised() {
    let edge = Value::object([
        ("app", Value::str("live")),
        ("flashVer", Value::str("WIN 15,0,0,239")),
        ("tcUrl", Value::str("rtmp://127.0.0.1:1935/live")),
        ("fpad", Value::Boolean(false)),
        ("capabilities", Value::Number(239.0)),
        ("audioCodecs", Value::Number(3575.0)),
        ("videoCodecs", Value::Number(252.0)),
        ("videoFunction", Value::Number(1.0)),
        ("objectEncoding", Value::Number(0.0)),
    ]);
    assert!(is_srs_edge(&edge));
    // ffmpeg's connect has another flashVer (and fourCcList in new versions).
    let ffmpeg = Value::object([
        ("flashVer", Value::str("LNX 9,0,124,2")),
        ("capabilities", Value::Number(15.0)),
    ]);
    assert!(!is_srs_edge(&ffmpeg));

    let mut s = Session::new();
    s.handle(Input::Command {
        cmd: command("connect", 1.0, edge, vec![]),
        stream_id: 0,
    })
    .unwrap();
    let Some(Action::AuthorizeConnect(info)) = s.poll_action() else {
        panic!("expected a connect check");
    };
    assert!(info.srs_edge && !info.claims_relay);

    let relay = Value::object([
        ("app", Value::str("live")),
        ("flashVer", Value::str("origin-cluster/0.1.0 relay")),
        (crate::relay::TOKEN_PROPERTY, Value::str("secret")),
    ]);
    let mut s = Session::new();
    s.handle(Input::Command {
        cmd: command("connect", 1.0, relay, vec![]),
        stream_id: 0,
    })
    .unwrap();
    let Some(Action::AuthorizeConnect(info)) = s.poll_action() else {
        panic!("expected a connect check");
    };
    assert!(info.claims_relay && !info.srs_edge);
    assert_eq!(info.token, "secret");
}

#[test]
fn publish_flow() {
    let mut s = connected();
    s.handle(bare("releaseStream", 2.0)).unwrap();
    s.handle(bare("FCPublish", 3.0)).unwrap();
    s.handle(bare("createStream", 4.0)).unwrap();
    let replies: Vec<_> = drain(&mut s).iter().map(said).collect();
    assert_eq!(replies, vec![("_result".to_string(), None); 3]);
    s.handle(named("publish", 5.0, "cam?token=t", 1)).unwrap();
    assert_eq!(
        drain(&mut s),
        [Action::Publish {
            key: StreamKey::new(origin_wire::DEFAULT_VHOST, "live", "cam"),
            query: Some("token=t".into()),
            stream_id: 1
        }]
    );
    s.handle(Input::PublishChecked(Ok(()))).unwrap();
    let actions = drain(&mut s);
    assert!(matches!(&actions[0], Action::Send(m) if m.type_id == kind::USER_CONTROL));
    assert_eq!(code(&actions[1]), status::PUBLISH_START);
    assert_eq!(actions.len(), 2);
    assert_eq!(s.role, Role::Publishing { stream_id: 1 });
    // deleteStream ends it.
    s.handle(bare("deleteStream", 0.0)).unwrap();
    assert_eq!(drain(&mut s), [Action::EndRole]);
    assert_eq!(s.role, Role::Idle);
}

#[test]
fn a_refused_publish_is_answered_counted_and_closed() {
    let mut s = connected();
    s.handle(named("publish", 5.0, "cam", 1)).unwrap();
    drain(&mut s);
    s.handle(Input::PublishChecked(Err(PublishRefusal {
        code: status::PUBLISH_DENIED,
        reason: "draining",
        description: "origin is draining".into(),
    })))
    .unwrap();
    let actions = drain(&mut s);
    assert_eq!(code(&actions[0]), status::PUBLISH_DENIED);
    assert_eq!(
        actions[1..],
        [
            Action::PublishRefused {
                reason: "draining",
                description: "origin is draining".into()
            },
            Action::Close
        ]
    );
}

#[test]
fn play_flow_to_a_player() {
    let mut s = connected();
    s.handle(bare("createStream", 2.0)).unwrap();
    drain(&mut s);
    s.handle(named("play", 0.0, "cam?redirect=302", 1)).unwrap();
    let actions = drain(&mut s);
    assert_eq!(actions[0], Action::EndRole);
    let Action::AuthorizePlay(request) = &actions[1] else {
        panic!("expected a play check, got {actions:?}");
    };
    assert_eq!(request.protocol, Protocol::Rtmp);
    assert_eq!(request.key.stream, "cam");
    assert_eq!(request.query.as_deref(), Some("redirect=302"));
    assert_eq!(
        request.client.kind,
        ClientKind {
            opted_in: true,
            ..ClientKind::default()
        }
    );
    let request = request.clone();
    s.handle(Input::PlayAuthorized(Ok(()))).unwrap();
    let actions = drain(&mut s);
    // StreamBegin, Reset, Start, |RtmpSampleAccess, Data.Start, then routing.
    assert!(matches!(&actions[0], Action::Send(m) if m.type_id == kind::USER_CONTROL));
    assert_eq!(code(&actions[1]), status::PLAY_RESET);
    assert_eq!(code(&actions[2]), status::PLAY_START);
    assert!(matches!(&actions[3], Action::Send(m) if m.type_id == kind::DATA_AMF0));
    assert!(matches!(&actions[4], Action::Send(m) if m.type_id == kind::DATA_AMF0));
    assert_eq!(
        actions[5..],
        [Action::Route {
            request,
            stream_id: 1
        }]
    );
    s.handle(Input::Routed(Routed::Playing)).unwrap();
    assert_eq!(drain(&mut s), []);
    assert_eq!(s.role, Role::Playing { stream_id: 1 });
    // A second play replaces the first.
    s.handle(named("play", 0.0, "other", 1)).unwrap();
    assert_eq!(drain(&mut s)[0], Action::EndRole);
}

/// A session whose play of `cam` on stream 1 waits for routing.
fn routing() -> Session {
    let mut s = connected();
    s.handle(named("play", 0.0, "cam", 1)).unwrap();
    s.handle(Input::PlayAuthorized(Ok(()))).unwrap();
    drain(&mut s);
    s
}

#[test]
fn a_redirected_play_gets_srs_302_on_stream_0_and_lingers() {
    let mut s = routing();
    let (tc_url, url) = ("rtmp://10.0.0.2:1935/live", "rtmp://10.0.0.2:1935/live/cam");
    s.handle(Input::Routed(Routed::Redirect {
        tc_url: tc_url.into(),
        url: url.into(),
    }))
    .unwrap();
    assert_eq!(
        drain(&mut s),
        [
            Action::Send(Message {
                csid: csid::STATUS,
                type_id: kind::COMMAND_AMF0,
                stream_id: 0,
                payload: command::redirect_302(tc_url, url),
            }),
            Action::CloseAfterLinger
        ]
    );
}

#[test]
fn an_unfound_or_refused_play_is_answered_and_closed() {
    let mut s = routing();
    s.handle(Input::Routed(Routed::NotFound)).unwrap();
    let actions = drain(&mut s);
    assert_eq!(code(&actions[0]), status::PLAY_STREAM_NOT_FOUND);
    assert_eq!(actions[1..], [Action::Close]);

    let mut s = routing();
    s.handle(Input::Routed(Routed::Refused("too many waiting".into())))
        .unwrap();
    let actions = drain(&mut s);
    assert_eq!(code(&actions[0]), PLAY_FAILED);
    assert_eq!(actions[1..], [Action::Close]);

    let mut s = connected();
    s.handle(named("play", 0.0, "cam", 1)).unwrap();
    drain(&mut s);
    s.handle(Input::PlayAuthorized(Err("no token".into())))
        .unwrap();
    let actions = drain(&mut s);
    assert_eq!(code(&actions[0]), PLAY_FAILED);
    assert_eq!(actions[1..], [Action::Close]);
}

#[test]
fn play_or_publish_before_connect_is_refused_with_a_clear_status() {
    let mut s = Session::new();
    s.handle(named("play", 0.0, "cam", 1)).unwrap();
    let actions = drain(&mut s);
    assert_eq!(code(&actions[0]), status::PLAY_STREAM_NOT_FOUND);
    assert_eq!(actions[1..], [Action::Close]);

    let mut s = Session::new();
    s.handle(named("publish", 0.0, "cam", 1)).unwrap();
    let actions = drain(&mut s);
    assert_eq!(code(&actions[0]), status::PUBLISH_BAD_NAME);
    assert_eq!(
        actions[1..],
        [
            Action::PublishRefused {
                reason: "bad_name",
                description: "connect first".into()
            },
            Action::Close
        ]
    );
}

#[test]
fn a_second_publish_is_refused_as_busy() {
    let mut s = connected();
    s.handle(named("publish", 0.0, "cam", 1)).unwrap();
    drain(&mut s);
    s.handle(Input::PublishChecked(Ok(()))).unwrap();
    drain(&mut s);
    s.handle(named("publish", 0.0, "cam2", 1)).unwrap();
    let actions = drain(&mut s);
    assert_eq!(code(&actions[0]), status::PUBLISH_BAD_NAME);
    assert!(matches!(
        &actions[1],
        Action::PublishRefused { reason: "busy", .. }
    ));
    assert_eq!(actions[2..], [Action::Close]);
}

#[test]
fn a_second_connect_and_bad_names_are_refused() {
    let mut s = connected();
    s.handle(connect_cmd("live")).unwrap();
    let actions = drain(&mut s);
    assert_eq!(code(&actions[0]), status::CONNECT_REJECTED);
    assert_eq!(actions[1..], [Action::Close]);

    let mut s = connected();
    s.handle(named("play", 0.0, "", 1)).unwrap();
    let actions = drain(&mut s);
    assert_eq!(code(&actions[0]), status::PLAY_STREAM_NOT_FOUND);
    assert_eq!(actions[1..], [Action::Close]);
}

#[test]
fn answers_out_of_order_are_errors_not_panics() {
    let mut s = Session::new();
    assert_eq!(
        s.handle(Input::Routed(Routed::Playing)),
        Err(SessionError::Unexpected("a routing answer"))
    );
    assert_eq!(
        s.handle(Input::PublishChecked(Ok(()))),
        Err(SessionError::Unexpected("a publish answer"))
    );
    s.handle(connect_cmd("live")).unwrap();
    // A command while the connect is checked, and the wrong answer, change nothing.
    assert_eq!(
        s.handle(bare("createStream", 2.0)),
        Err(SessionError::Pending("connect"))
    );
    assert_eq!(
        s.handle(Input::PlayAuthorized(Ok(()))),
        Err(SessionError::Unexpected("a play authorization"))
    );
    drain(&mut s);
    s.handle(Input::ConnectChecked(Ok(client()))).unwrap();
    assert_eq!(s.client(), Some(&client()));
}

#[test]
fn bookkeeping_commands_and_stream_ids() {
    let mut s = connected();
    for txn in 1..=1100 {
        s.handle(bare("createStream", f64::from(txn))).unwrap();
    }
    let ids: Vec<f64> = drain(&mut s)
        .iter()
        .map(|a| {
            let Action::Send(m) = a else { panic!() };
            command::parse(m.type_id, &m.payload).unwrap().args[0]
                .as_number()
                .unwrap()
        })
        .collect();
    assert_eq!(ids[0], 1.0);
    assert_eq!(ids[1099], f64::from(MAX_STREAM_ID));
    // Answered only when the client waits for an answer (a transaction id).
    s.handle(bare("FCUnpublish", 0.0)).unwrap();
    s.handle(bare("getStreamLength", 0.0)).unwrap();
    s.handle(bare("receiveVideo", 3.0)).unwrap();
    s.handle(bare("nonsense", 0.0)).unwrap();
    assert_eq!(drain(&mut s), []);
    s.handle(bare("FCUnpublish", 4.0)).unwrap();
    s.handle(bare("nonsense", 5.0)).unwrap();
    let actions = drain(&mut s);
    assert_eq!(said(&actions[0]), ("_result".to_string(), None));
    assert_eq!(
        said(&actions[1]),
        ("_error".into(), Some(status::CALL_FAILED.into()))
    );
    s.handle(bare("closeStream", 0.0)).unwrap();
    assert_eq!(drain(&mut s), [Action::EndRole]);
}

fn any_input() -> impl Strategy<Value = Input> {
    let names = prop::sample::select(vec![
        "connect",
        "createStream",
        "publish",
        "play",
        "deleteStream",
        "closeStream",
        "FCPublish",
        "FCUnpublish",
        "releaseStream",
        "pause",
        "what",
    ]);
    prop_oneof![
        (names, 0u8..3, "[a-z/?=.]{0,8}").prop_map(|(n, txn, arg)| {
            let object = Value::object([("app", Value::str(&arg)), ("tcUrl", Value::str(&arg))]);
            Input::Command {
                cmd: command(n, f64::from(txn), object, vec![Value::str(&arg)]),
                stream_id: u32::from(txn),
            }
        }),
        any::<bool>().prop_map(|ok| Input::ConnectChecked(if ok {
            Ok(client())
        } else {
            Err("no".into())
        })),
        any::<bool>().prop_map(|ok| Input::PublishChecked(if ok {
            Ok(())
        } else {
            Err(PublishRefusal {
                code: status::PUBLISH_DENIED,
                reason: "x",
                description: "no".into(),
            })
        })),
        any::<bool>().prop_map(|ok| Input::PlayAuthorized(if ok {
            Ok(())
        } else {
            Err("no".into())
        })),
        prop::sample::select(vec![Routed::Playing, Routed::NotFound]).prop_map(Input::Routed),
    ]
}

proptest! {
    /// Whatever arrives in whatever order: errors or actions, never a panic, and nothing
    /// is asked of the connection after it was told to close.
    #[test]
    fn prop_any_order_never_panics(inputs in prop::collection::vec(any_input(), 0..24)) {
        let mut s = Session::new();
        let mut closed = false;
        for input in inputs {
            let r = s.handle(input);
            if closed {
                prop_assert_eq!(r, Err(SessionError::Closed));
            }
            for a in drain(&mut s) {
                prop_assert!(!closed, "an action after close: {:?}", a);
                closed |= matches!(a, Action::Close | Action::CloseAfterLinger);
            }
        }
    }
}
