//! AMF0 values: a sans-io encoder and a bounded decoder.
//!
//! Every type a real client sends is understood (number, boolean, string, object, null,
//! undefined, reference, ECMA array, strict array, date, long string, XML document,
//! typed object). The AVM+ marker (switch to AMF3) is surfaced as [`Value::Avmplus`]
//! carrying the rest of the input untouched so AMF3 data can be passed through.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Limits that keep a hostile peer from making the decoder allocate or recurse without bound.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Nesting depth of objects/arrays.
    pub max_depth: usize,
    /// Longest string (short or long) in bytes.
    pub max_string: usize,
    /// Most entries in one object or array.
    pub max_entries: usize,
    /// Most values decoded from one input in all (nested ones included): the budget
    /// that bounds what one message can make the decoder allocate.
    pub max_values: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 32,
            max_string: 1 << 20,
            max_entries: 65_536,
            max_values: 8192,
        }
    }
}

mod marker {
    pub const NUMBER: u8 = 0x00;
    pub const BOOLEAN: u8 = 0x01;
    pub const STRING: u8 = 0x02;
    pub const OBJECT: u8 = 0x03;
    pub const MOVIECLIP: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const UNDEFINED: u8 = 0x06;
    pub const REFERENCE: u8 = 0x07;
    pub const ECMA_ARRAY: u8 = 0x08;
    pub const OBJECT_END: u8 = 0x09;
    pub const STRICT_ARRAY: u8 = 0x0a;
    pub const DATE: u8 = 0x0b;
    pub const LONG_STRING: u8 = 0x0c;
    pub const UNSUPPORTED: u8 = 0x0d;
    pub const RECORDSET: u8 = 0x0e;
    pub const XML_DOCUMENT: u8 = 0x0f;
    pub const TYPED_OBJECT: u8 = 0x10;
    pub const AVMPLUS: u8 = 0x11;
}

/// An AMF0 value. Objects keep their key order (SRS and clients depend on it).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Boolean(bool),
    String(String),
    Object(Vec<(String, Value)>),
    Null,
    Undefined,
    Reference(u16),
    EcmaArray(Vec<(String, Value)>),
    StrictArray(Vec<Value>),
    Date {
        millis: f64,
        timezone: i16,
    },
    LongString(String),
    Unsupported,
    XmlDocument(String),
    TypedObject {
        class: String,
        properties: Vec<(String, Value)>,
    },
    /// AVM+ marker: the rest of the buffer is AMF3, kept as raw bytes.
    Avmplus(Bytes),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Amf0Error {
    #[error("AMF0 input truncated")]
    Truncated,
    #[error("unknown AMF0 marker 0x{0:02x}")]
    UnknownMarker(u8),
    #[error("AMF0 nesting deeper than {0}")]
    TooDeep(usize),
    #[error("AMF0 string of {0} bytes exceeds the limit")]
    StringTooLong(usize),
    #[error("AMF0 collection of {0} entries exceeds the limit")]
    TooManyEntries(usize),
    #[error("AMF0 input holds more than {0} values")]
    TooManyValues(usize),
    #[error("AMF0 string is not UTF-8")]
    NotUtf8,
}

impl Value {
    pub fn str(s: impl Into<String>) -> Self {
        Value::String(s.into())
    }

    pub fn object<K: Into<String>>(entries: impl IntoIterator<Item = (K, Value)>) -> Self {
        Value::Object(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// String content of a short or long string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) | Value::LongString(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// Properties of an object, ECMA array or typed object.
    pub fn properties(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Object(p) | Value::EcmaArray(p) => Some(p),
            Value::TypedObject { properties, .. } => Some(properties),
            _ => None,
        }
    }

    /// Looks a property up by name.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.properties()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Appends the encoding of this value.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Value::Number(n) => {
                out.put_u8(marker::NUMBER);
                out.put_f64(*n);
            }
            Value::Boolean(b) => {
                out.put_u8(marker::BOOLEAN);
                out.put_u8(u8::from(*b));
            }
            Value::String(s) => {
                if s.len() > u16::MAX as usize {
                    out.put_u8(marker::LONG_STRING);
                    put_long_str(out, s);
                } else {
                    out.put_u8(marker::STRING);
                    put_short_str(out, s);
                }
            }
            Value::Object(props) => {
                out.put_u8(marker::OBJECT);
                encode_props(out, props);
            }
            Value::Null => out.put_u8(marker::NULL),
            Value::Undefined => out.put_u8(marker::UNDEFINED),
            Value::Reference(r) => {
                out.put_u8(marker::REFERENCE);
                out.put_u16(*r);
            }
            Value::EcmaArray(props) => {
                out.put_u8(marker::ECMA_ARRAY);
                out.put_u32(props.len() as u32);
                encode_props(out, props);
            }
            Value::StrictArray(items) => {
                out.put_u8(marker::STRICT_ARRAY);
                out.put_u32(items.len() as u32);
                for v in items {
                    v.encode(out);
                }
            }
            Value::Date { millis, timezone } => {
                out.put_u8(marker::DATE);
                out.put_f64(*millis);
                out.put_i16(*timezone);
            }
            Value::LongString(s) => {
                out.put_u8(marker::LONG_STRING);
                put_long_str(out, s);
            }
            Value::Unsupported => out.put_u8(marker::UNSUPPORTED),
            Value::XmlDocument(s) => {
                out.put_u8(marker::XML_DOCUMENT);
                put_long_str(out, s);
            }
            Value::TypedObject { class, properties } => {
                out.put_u8(marker::TYPED_OBJECT);
                put_short_str(out, class);
                encode_props(out, properties);
            }
            Value::Avmplus(raw) => {
                out.put_u8(marker::AVMPLUS);
                out.put_slice(raw);
            }
        }
    }
}

fn put_short_str(out: &mut BytesMut, s: &str) {
    // Short strings are capped at u16::MAX bytes by the format; truncate at a char boundary.
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.put_u16(end as u16);
    out.put_slice(&s.as_bytes()[..end]);
}

fn put_long_str(out: &mut BytesMut, s: &str) {
    out.put_u32(s.len() as u32);
    out.put_slice(s.as_bytes());
}

fn encode_props(out: &mut BytesMut, props: &[(String, Value)]) {
    for (k, v) in props {
        put_short_str(out, k);
        v.encode(out);
    }
    out.put_slice(&[0, 0, marker::OBJECT_END]);
}

/// Encodes a sequence of values (a command or data message body).
pub fn encode_all(values: &[Value]) -> Bytes {
    let mut out = BytesMut::with_capacity(128);
    for v in values {
        v.encode(&mut out);
    }
    out.freeze()
}

/// A bounded AMF0 decoder over a byte slice.
pub struct Decoder<'a> {
    buf: &'a [u8],
    limits: Limits,
    decoded: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self::with_limits(buf, Limits::default())
    }

    pub fn with_limits(buf: &'a [u8], limits: Limits) -> Self {
        Self {
            buf,
            limits,
            decoded: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Decodes the next value.
    pub fn decode(&mut self) -> Result<Value, Amf0Error> {
        self.value(0)
    }

    /// Decodes values until the input ends.
    pub fn decode_all(mut self) -> Result<Vec<Value>, Amf0Error> {
        let mut out = Vec::new();
        while !self.buf.is_empty() {
            out.push(self.decode()?);
            if out.len() > self.limits.max_entries {
                return Err(Amf0Error::TooManyEntries(out.len()));
            }
        }
        Ok(out)
    }

    fn need(&self, n: usize) -> Result<(), Amf0Error> {
        if self.buf.len() < n {
            Err(Amf0Error::Truncated)
        } else {
            Ok(())
        }
    }

    fn u8(&mut self) -> Result<u8, Amf0Error> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    fn u16(&mut self) -> Result<u16, Amf0Error> {
        self.need(2)?;
        Ok(self.buf.get_u16())
    }

    fn u32(&mut self) -> Result<u32, Amf0Error> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }

    fn f64(&mut self) -> Result<f64, Amf0Error> {
        self.need(8)?;
        Ok(self.buf.get_f64())
    }

    fn string_of(&mut self, len: usize) -> Result<String, Amf0Error> {
        if len > self.limits.max_string {
            return Err(Amf0Error::StringTooLong(len));
        }
        self.need(len)?;
        let s = std::str::from_utf8(&self.buf[..len])
            .map_err(|_| Amf0Error::NotUtf8)?
            .to_string();
        self.buf.advance(len);
        Ok(s)
    }

    fn short_string(&mut self) -> Result<String, Amf0Error> {
        let len = self.u16()? as usize;
        self.string_of(len)
    }

    fn long_string(&mut self) -> Result<String, Amf0Error> {
        let len = self.u32()? as usize;
        self.string_of(len)
    }

    fn props(&mut self, depth: usize) -> Result<Vec<(String, Value)>, Amf0Error> {
        let mut props = Vec::new();
        loop {
            // An object ends with an empty key followed by the end marker.
            if self.buf.len() >= 3
                && self.buf[0] == 0
                && self.buf[1] == 0
                && self.buf[2] == marker::OBJECT_END
            {
                self.buf.advance(3);
                return Ok(props);
            }
            let key = self.short_string()?;
            // Some encoders end ECMA arrays with an empty key and no end marker at the buffer end.
            if key.is_empty() && self.buf.is_empty() {
                return Ok(props);
            }
            let v = self.value(depth + 1)?;
            props.push((key, v));
            if props.len() > self.limits.max_entries {
                return Err(Amf0Error::TooManyEntries(props.len()));
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, Amf0Error> {
        if depth > self.limits.max_depth {
            return Err(Amf0Error::TooDeep(self.limits.max_depth));
        }
        self.decoded += 1;
        if self.decoded > self.limits.max_values {
            return Err(Amf0Error::TooManyValues(self.limits.max_values));
        }
        let m = self.u8()?;
        Ok(match m {
            marker::NUMBER => Value::Number(self.f64()?),
            marker::BOOLEAN => Value::Boolean(self.u8()? != 0),
            marker::STRING => Value::String(self.short_string()?),
            marker::OBJECT => Value::Object(self.props(depth)?),
            marker::MOVIECLIP | marker::RECORDSET => return Err(Amf0Error::UnknownMarker(m)),
            marker::NULL => Value::Null,
            marker::UNDEFINED => Value::Undefined,
            marker::REFERENCE => Value::Reference(self.u16()?),
            marker::ECMA_ARRAY => {
                let declared = self.u32()? as usize;
                if declared > self.limits.max_entries {
                    return Err(Amf0Error::TooManyEntries(declared));
                }
                Value::EcmaArray(self.props(depth)?)
            }
            marker::OBJECT_END => return Err(Amf0Error::UnknownMarker(m)),
            marker::STRICT_ARRAY => {
                let n = self.u32()? as usize;
                if n > self.limits.max_entries {
                    return Err(Amf0Error::TooManyEntries(n));
                }
                // Every element takes at least one byte: a count beyond the input is a lie.
                if n > self.buf.len() {
                    return Err(Amf0Error::Truncated);
                }
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::StrictArray(items)
            }
            marker::DATE => {
                let millis = self.f64()?;
                self.need(2)?;
                let timezone = self.buf.get_i16();
                Value::Date { millis, timezone }
            }
            marker::LONG_STRING => Value::LongString(self.long_string()?),
            marker::UNSUPPORTED => Value::Unsupported,
            marker::XML_DOCUMENT => Value::XmlDocument(self.long_string()?),
            marker::TYPED_OBJECT => {
                let class = self.short_string()?;
                Value::TypedObject {
                    class,
                    properties: self.props(depth)?,
                }
            }
            marker::AVMPLUS => {
                let rest = Bytes::copy_from_slice(self.buf);
                self.buf = &[];
                Value::Avmplus(rest)
            }
            other => return Err(Amf0Error::UnknownMarker(other)),
        })
    }
}

/// Decodes a whole message body into values.
pub fn decode_all(buf: &[u8]) -> Result<Vec<Value>, Amf0Error> {
    Decoder::new(buf).decode_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(v: &Value) -> Value {
        let mut b = BytesMut::new();
        v.encode(&mut b);
        let mut d = Decoder::new(&b);
        let out = d.decode().unwrap();
        assert!(d.is_empty());
        out
    }

    #[test]
    fn all_types_round_trip() {
        let v = Value::object([
            ("n", Value::Number(1.5)),
            ("b", Value::Boolean(true)),
            ("s", Value::str("hé")),
            ("null", Value::Null),
            ("u", Value::Undefined),
            ("r", Value::Reference(3)),
            (
                "e",
                Value::EcmaArray(vec![("duration".into(), Value::Number(0.0))]),
            ),
            (
                "a",
                Value::StrictArray(vec![Value::Number(1.0), Value::str("x")]),
            ),
            (
                "d",
                Value::Date {
                    millis: 1e12,
                    timezone: -60,
                },
            ),
            ("l", Value::LongString("long".into())),
            ("x", Value::XmlDocument("<a/>".into())),
            (
                "t",
                Value::TypedObject {
                    class: "C".into(),
                    properties: vec![("k".into(), Value::Null)],
                },
            ),
            ("un", Value::Unsupported),
        ]);
        assert_eq!(round_trip(&v), v);
    }

    #[test]
    fn connect_command_from_ffmpeg_decodes() {
        // "connect", 1, {app:"live", tcUrl:"rtmp://127.0.0.1/live"}
        let body = encode_all(&[
            Value::str("connect"),
            Value::Number(1.0),
            Value::object([
                ("app", Value::str("live")),
                ("tcUrl", Value::str("rtmp://127.0.0.1/live")),
            ]),
        ]);
        let vals = decode_all(&body).unwrap();
        assert_eq!(vals[0].as_str(), Some("connect"));
        assert_eq!(vals[2].get("app").and_then(Value::as_str), Some("live"));
    }

    #[test]
    fn rejects_truncated_and_oversized() {
        assert_eq!(
            decode_all(&[marker::NUMBER, 0, 0]),
            Err(Amf0Error::Truncated)
        );
        assert_eq!(
            decode_all(&[marker::STRING, 0, 5, b'a']),
            Err(Amf0Error::Truncated)
        );
        assert_eq!(
            decode_all(&[marker::STRICT_ARRAY, 0xff, 0xff, 0xff, 0xff]),
            Err(Amf0Error::TooManyEntries(0xffff_ffff))
        );
        assert_eq!(
            decode_all(&[marker::STRICT_ARRAY, 0, 0, 0, 9, 5]),
            Err(Amf0Error::Truncated)
        );
        let big = Limits {
            max_string: 4,
            ..Limits::default()
        };
        assert_eq!(
            Decoder::with_limits(&[marker::STRING, 0, 5, b'a', b'b', b'c', b'd', b'e'], big)
                .decode(),
            Err(Amf0Error::StringTooLong(5))
        );
        // A flat array of more values than the budget is refused, however small each is.
        let mut many = vec![marker::STRICT_ARRAY];
        many.extend_from_slice(&20_000u32.to_be_bytes());
        many.extend(std::iter::repeat_n(marker::NULL, 20_000));
        assert_eq!(
            Decoder::new(&many).decode(),
            Err(Amf0Error::TooManyValues(8192))
        );
        // 40 nested objects exceed the default depth of 32.
        let mut deep = Vec::new();
        for _ in 0..40 {
            deep.extend_from_slice(&[marker::OBJECT, 0, 1, b'k']);
        }
        assert_eq!(decode_all(&deep), Err(Amf0Error::TooDeep(32)));
        assert_eq!(decode_all(&[0x42]), Err(Amf0Error::UnknownMarker(0x42)));
    }

    #[test]
    fn avmplus_passes_rest_through() {
        let vals = decode_all(&[marker::NULL, marker::AVMPLUS, 0x06, 0x05, b'h', b'i']).unwrap();
        assert_eq!(
            vals[1],
            Value::Avmplus(Bytes::from_static(&[0x06, 0x05, b'h', b'i']))
        );
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<f64>()
                .prop_filter("NaN never equals itself", |f| !f.is_nan())
                .prop_map(Value::Number),
            any::<bool>().prop_map(Value::Boolean),
            ".{0,20}".prop_map(Value::String),
            Just(Value::Null),
            Just(Value::Undefined),
            any::<u16>().prop_map(Value::Reference),
            ".{0,20}".prop_map(Value::LongString),
            (any::<i32>(), any::<i16>()).prop_map(|(m, tz)| Value::Date {
                millis: f64::from(m),
                timezone: tz
            }),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(("[a-z]{1,8}", inner.clone()), 0..6).prop_map(Value::Object),
                prop::collection::vec(("[a-z]{1,8}", inner.clone()), 0..6)
                    .prop_map(Value::EcmaArray),
                prop::collection::vec(inner, 0..6).prop_map(Value::StrictArray),
            ]
        })
    }

    proptest! {
        #[test]
        fn prop_round_trip(vals in prop::collection::vec(arb_value(), 1..5)) {
            let body = encode_all(&vals);
            prop_assert_eq!(decode_all(&body).unwrap(), vals);
        }

        #[test]
        fn prop_truncation_never_panics(vals in prop::collection::vec(arb_value(), 1..4), cut in any::<prop::sample::Index>()) {
            let body = encode_all(&vals);
            let cut = cut.index(body.len());
            // A strict prefix either fails cleanly or decodes to fewer/other values; never panics.
            let _ = decode_all(&body[..cut]);
        }

        #[test]
        fn prop_garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_all(&data);
        }
    }
}
