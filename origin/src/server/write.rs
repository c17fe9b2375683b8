//! Vectored writes of shared buffers: a batch of pre-encoded frames goes out with as few
//! syscalls as the kernel allows and without copying; and the socket handle the
//! publisher writes through to (a duplicate of the player's descriptor).

use std::io::{IoSlice, Write};
use std::os::fd::AsFd;

use bytes::Bytes;
use tokio::net::tcp::OwnedWriteHalf;

use crate::media::DirectWrite;

/// A player's socket as the publisher writes to it: its own descriptor (a `dup`, so it
/// stays valid for as long as the publisher holds it), non-blocking like the original.
/// Tokio's view of the socket stays right: it only trusts readiness it saw itself and
/// always tries the write before it waits.
pub struct SocketWriter(std::net::TcpStream);

impl SocketWriter {
    /// None if the descriptor cannot be duplicated (the player then is not written
    /// through, which costs only speed).
    pub fn new(w: &OwnedWriteHalf) -> Option<Self> {
        let fd = w.as_ref().as_fd().try_clone_to_owned().ok()?;
        Some(Self(std::net::TcpStream::from(fd)))
    }
}

impl DirectWrite for SocketWriter {
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        match (&self.0).write_vectored(bufs) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
            r => r,
        }
    }
}

/// Most buffers handed to one `writev` (IOV_MAX is 1024; a batch is at most 128 frames
/// of one or two buffers each plus its control messages, so one call usually covers it).
const MAX_IOV: usize = 264;

/// Writes every buffer, in order.
pub async fn write_all_vectored(w: &mut OwnedWriteHalf, bufs: &[Bytes]) -> std::io::Result<()> {
    let mut idx = 0;
    let mut offset = 0;
    loop {
        // Empty buffers have nothing to write (and would end in a zero-length write).
        while idx < bufs.len() && bufs[idx].len() == offset {
            idx += 1;
            offset = 0;
        }
        if idx == bufs.len() {
            break;
        }
        // The slices live on the stack of one poll only, so they do not grow every
        // player's task.
        let mut n = std::future::poll_fn(|cx| {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let mut k = 0;
            for (i, b) in bufs[idx..].iter().take(MAX_IOV).enumerate() {
                slices[k] = IoSlice::new(if i == 0 { &b[offset..] } else { b });
                k += 1;
            }
            tokio::io::AsyncWrite::poll_write_vectored(
                std::pin::Pin::new(&mut *w),
                cx,
                &slices[..k],
            )
        })
        .await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 && idx < bufs.len() {
            let left = bufs[idx].len() - offset;
            if n >= left {
                n -= left;
                idx += 1;
                offset = 0;
            } else {
                offset += n;
                n = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    #[tokio::test]
    async fn empty_buffers_anywhere_are_skipped() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (mut server, _) = l.accept().await.unwrap();
        let (_r, mut w) = client.into_split();
        let bufs = [
            Bytes::new(),
            Bytes::from_static(b"ab"),
            Bytes::new(),
            Bytes::from_static(b"cd"),
            Bytes::new(),
        ];
        write_all_vectored(&mut w, &bufs).await.unwrap();
        write_all_vectored(&mut w, &[Bytes::new()]).await.unwrap();
        let mut got = [0u8; 4];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"abcd");
    }
}
