//! The stream model: frames, the GOP cache, fan-out to players, the stream registry, FLV.

pub mod flv;
pub mod frame;
pub mod registry;
pub mod stream;

pub use frame::{Frame, FrameKind};
pub use registry::Registry;
pub use stream::{MediaConfig, Next, PublisherInfo, Stream, StreamKey, Subscriber};
