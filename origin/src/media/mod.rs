//! The stream model: names, frames, the GOP cache, fan-out to players, the stream
//! registry, FLV, and the handles publishers and players hold.

pub mod direct;
pub mod flv;
pub mod frame;
pub mod name;
pub mod player;
pub mod publisher;
pub mod registry;
pub mod stream;

pub use direct::{AUDIO_HOLD, DirectWrite, Flush};
pub use frame::{Frame, FrameKind};
pub use name::StreamKey;
pub use player::{Delivery, End, Notice, PlayConfig, Player};
pub use publisher::{Publisher, flush_stepped, held_until};
pub use registry::{Hold, PublishWatch, Registry};
pub use stream::{MediaConfig, Next, PublisherInfo, Stream, Subscriber};
