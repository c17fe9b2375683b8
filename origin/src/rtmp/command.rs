//! RTMP commands (AMF0 command messages): parsing what clients send and building the
//! replies servers send, including SRS's RTMP 302 redirect (docs/architecture.md, "RTMP 302").

use bytes::Bytes;

use super::amf0::{self, Amf0Error, Value};
use super::message::kind;

/// A decoded command: `name`, transaction id, command object, further arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub name: String,
    pub transaction: f64,
    pub object: Value,
    pub args: Vec<Value>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CommandError {
    #[error("command body: {0}")]
    Amf(#[from] Amf0Error),
    #[error("command has no name")]
    NoName,
    #[error("message type {0} is not a command")]
    NotCommand(u8),
}

/// Decodes an AMF0 command (type 20) or an AMF3 command (type 17, whose body is AMF0
/// after a leading format byte).
pub fn parse(type_id: u8, payload: &[u8]) -> Result<Command, CommandError> {
    let body = match type_id {
        kind::COMMAND_AMF0 => payload,
        kind::COMMAND_AMF3 => payload.get(1..).unwrap_or_default(),
        other => return Err(CommandError::NotCommand(other)),
    };
    let mut values = amf0::decode_all(body)?.into_iter();
    let name = match values.next() {
        Some(Value::String(s)) | Some(Value::LongString(s)) => s,
        _ => return Err(CommandError::NoName),
    };
    let transaction = values.next().and_then(|v| v.as_number()).unwrap_or(0.0);
    let object = values.next().unwrap_or(Value::Null);
    Ok(Command {
        name,
        transaction,
        object,
        args: values.collect(),
    })
}

impl Command {
    /// The n-th argument after the command object, as a string.
    pub fn arg_str(&self, n: usize) -> Option<&str> {
        self.args.get(n).and_then(Value::as_str)
    }

    pub fn arg_number(&self, n: usize) -> Option<f64> {
        self.args.get(n).and_then(Value::as_number)
    }

    pub fn encode(&self) -> Bytes {
        let mut v = vec![
            Value::String(self.name.clone()),
            Value::Number(self.transaction),
            self.object.clone(),
        ];
        v.extend(self.args.iter().cloned());
        amf0::encode_all(&v)
    }
}

/// `_result` with the given values after the transaction id.
pub fn result(transaction: f64, values: Vec<Value>) -> Bytes {
    let mut v = vec![Value::str("_result"), Value::Number(transaction)];
    v.extend(values);
    amf0::encode_all(&v)
}

/// `_error` with a status object.
pub fn error(transaction: f64, code: &str, description: &str) -> Bytes {
    amf0::encode_all(&[
        Value::str("_error"),
        Value::Number(transaction),
        Value::Null,
        status_object("error", code, description),
    ])
}

fn status_object(level: &str, code: &str, description: &str) -> Value {
    Value::object([
        ("level", Value::str(level)),
        ("code", Value::str(code)),
        ("description", Value::str(description)),
    ])
}

/// The reply to `connect`.
pub fn connect_result(transaction: f64, object_encoding: f64) -> Bytes {
    result(
        transaction,
        vec![
            Value::object([
                ("fmsVer", Value::str("FMS/3,5,3,888")),
                ("capabilities", Value::Number(127.0)),
                ("mode", Value::Number(1.0)),
            ]),
            Value::object([
                ("level", Value::str("status")),
                ("code", Value::str("NetConnection.Connect.Success")),
                ("description", Value::str("Connection succeeded.")),
                ("objectEncoding", Value::Number(object_encoding)),
            ]),
        ],
    )
}

/// `onStatus` (transaction 0, null command object) with level, code, description and
/// optional extra properties.
pub fn on_status(level: &str, code: &str, description: &str, extra: Vec<(String, Value)>) -> Bytes {
    let mut info = vec![
        ("level".to_string(), Value::str(level)),
        ("code".to_string(), Value::str(code)),
        ("description".to_string(), Value::str(description)),
    ];
    info.extend(extra);
    amf0::encode_all(&[
        Value::str("onStatus"),
        Value::Number(0.0),
        Value::Null,
        Value::Object(info),
    ])
}

/// A data message (`|RtmpSampleAccess`, `onStatus` as data, `onMetaData`).
pub fn data(values: &[Value]) -> Bytes {
    amf0::encode_all(values)
}

/// SRS's RTMP 302, byte for byte: `onStatus`, 0, null, `{level:"error",
/// code:"NetConnection.Connect.Rejected", description:"RTMP 302 Redirect", ex:{code:302,
/// redirect:<tcUrl>, redirect2:<full url>}}`. Send on chunk stream 5, message stream 0.
pub fn redirect_302(tc_url: &str, full_url: &str) -> Bytes {
    on_status(
        "error",
        "NetConnection.Connect.Rejected",
        "RTMP 302 Redirect",
        vec![(
            "ex".to_string(),
            Value::object([
                ("code", Value::Number(302.0)),
                ("redirect", Value::str(tc_url)),
                ("redirect2", Value::str(full_url)),
            ]),
        )],
    )
}

/// Status codes clients act on.
pub mod status {
    pub const PUBLISH_START: &str = "NetStream.Publish.Start";
    pub const PUBLISH_BAD_NAME: &str = "NetStream.Publish.BadName";
    pub const PUBLISH_DENIED: &str = "NetStream.Publish.Denied";
    pub const UNPUBLISH_SUCCESS: &str = "NetStream.Unpublish.Success";
    pub const PLAY_RESET: &str = "NetStream.Play.Reset";
    pub const PLAY_START: &str = "NetStream.Play.Start";
    pub const PLAY_STOP: &str = "NetStream.Play.Stop";
    pub const PLAY_STREAM_NOT_FOUND: &str = "NetStream.Play.StreamNotFound";
    pub const PLAY_UNPUBLISH_NOTIFY: &str = "NetStream.Play.UnpublishNotify";
    pub const PLAY_PUBLISH_NOTIFY: &str = "NetStream.Play.PublishNotify";
    pub const DATA_START: &str = "NetStream.Data.Start";
    pub const CALL_FAILED: &str = "NetConnection.Call.Failed";
    pub const CONNECT_REJECTED: &str = "NetConnection.Connect.Rejected";
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The payload SRS 5.0.216 sent on the wire (notes §1.5), rebuilt from its hex.
    fn srs_302_capture() -> Vec<u8> {
        let mut v = Vec::new();
        let s = |v: &mut Vec<u8>, t: &str| {
            v.extend_from_slice(&(t.len() as u16).to_be_bytes());
            v.extend_from_slice(t.as_bytes());
        };
        v.push(2);
        s(&mut v, "onStatus");
        v.push(0);
        v.extend_from_slice(&0f64.to_be_bytes());
        v.push(5);
        v.push(3);
        for (k, val) in [
            ("level", "error"),
            ("code", "NetConnection.Connect.Rejected"),
            ("description", "RTMP 302 Redirect"),
        ] {
            s(&mut v, k);
            v.push(2);
            s(&mut v, val);
        }
        s(&mut v, "ex");
        v.push(3);
        s(&mut v, "code");
        v.push(0);
        v.extend_from_slice(&[0x40, 0x72, 0xe0, 0, 0, 0, 0, 0]);
        s(&mut v, "redirect");
        v.push(2);
        s(&mut v, "rtmp://127.0.0.1:21936/live");
        s(&mut v, "redirect2");
        v.push(2);
        s(&mut v, "rtmp://127.0.0.1:21936/live/test");
        v.extend_from_slice(&[0, 0, 9, 0, 0, 9]);
        v
    }

    #[test]
    fn redirect_is_byte_exact_srs() {
        let ours = redirect_302(
            "rtmp://127.0.0.1:21936/live",
            "rtmp://127.0.0.1:21936/live/test",
        );
        let srs = srs_302_capture();
        assert_eq!(srs.len(), 221, "capture length from the notes");
        assert_eq!(&ours[..], &srs[..]);
    }

    #[test]
    fn parses_publish_and_amf3_commands() {
        let body = amf0::encode_all(&[
            Value::str("publish"),
            Value::Number(5.0),
            Value::Null,
            Value::str("s?k=v"),
            Value::str("live"),
        ]);
        let c = parse(kind::COMMAND_AMF0, &body).unwrap();
        assert_eq!(
            (c.name.as_str(), c.transaction, c.arg_str(0), c.arg_str(1)),
            ("publish", 5.0, Some("s?k=v"), Some("live"))
        );
        let mut amf3 = vec![0u8];
        amf3.extend_from_slice(&body);
        assert_eq!(parse(kind::COMMAND_AMF3, &amf3).unwrap(), c);
        assert_eq!(parse(kind::COMMAND_AMF0, &[]), Err(CommandError::NoName));
        assert!(parse(kind::COMMAND_AMF0, &[2, 0, 9, b'a']).is_err());
        assert_eq!(parse(kind::VIDEO, &body), Err(CommandError::NotCommand(9)));
    }
}
