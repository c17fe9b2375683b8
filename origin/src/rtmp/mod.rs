//! The RTMP protocol, sans-io: handshake, chunk stream, AMF0, messages, commands, URLs.

pub mod amf0;
pub mod chunk;
pub mod command;
pub mod handshake;
pub mod message;
pub mod url;
