//! Vectored writes of shared buffers: a batch of pre-encoded frames goes out with as few
//! syscalls as the kernel allows and without copying; and the socket handle the
//! publisher writes through to, which shares the player's descriptor (a player costs one
//! descriptor, not two).

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;

use crate::media::DirectWrite;

/// The write half of a connection's socket, shared with the publisher when the player is
/// written through ([`SharedWriter::direct`]). Writes go through tokio's readiness of
/// that one socket, so a write that would block, from either side, makes the next wait
/// for the kernel.
pub struct SharedWriter(Arc<OwnedWriteHalf>);

impl SharedWriter {
    pub fn new(w: OwnedWriteHalf) -> Self {
        Self(Arc::new(w))
    }

    /// The publisher's handle on the same socket (no second descriptor).
    pub fn direct(&self) -> SocketWriter {
        SocketWriter(self.0.clone())
    }

    fn socket(&self) -> &TcpStream {
        (*self.0).as_ref()
    }

    /// Waits until the socket may take more, then writes with `f`; again on `WouldBlock`
    /// (which clears the readiness, so the next wait is a real one).
    fn poll_io(
        &self,
        cx: &mut Context<'_>,
        mut f: impl FnMut(&TcpStream) -> std::io::Result<usize>,
    ) -> Poll<std::io::Result<usize>> {
        loop {
            ready!(self.socket().poll_write_ready(cx))?;
            match f(self.socket()) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }
}

impl AsyncWrite for SharedWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.poll_io(cx, |s| s.try_write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.poll_io(cx, |s| s.try_write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Arc::get_mut(&mut self.0) {
            Some(w) => Pin::new(w).poll_shutdown(cx),
            // A publisher still holds the socket: its write side shuts down when the last
            // handle is dropped (as an `OwnedWriteHalf` does).
            None => Poll::Ready(Ok(())),
        }
    }
}

/// A player's socket as the publisher writes to it: the connection's own socket, shared,
/// never blocking.
pub struct SocketWriter(Arc<OwnedWriteHalf>);

impl DirectWrite for SocketWriter {
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        match (*self.0).as_ref().try_write_vectored(bufs) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
            r => r,
        }
    }
}

/// Most buffers handed to one `writev` (IOV_MAX is 1024; a batch is at most 128 frames
/// of one or two buffers each plus its control messages, so one call usually covers it).
const MAX_IOV: usize = 264;

/// Writes every buffer, in order.
pub async fn write_all_vectored<W: AsyncWrite + Unpin>(
    w: &mut W,
    bufs: &[Bytes],
) -> std::io::Result<()> {
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
            AsyncWrite::poll_write_vectored(std::pin::Pin::new(&mut *w), cx, &slices[..k])
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

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    #[tokio::test]
    async fn the_publishers_handle_shares_the_socket_without_a_second_descriptor() {
        use tokio::io::AsyncWriteExt;
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (mut server, _) = l.accept().await.unwrap();
        let (_r, w) = client.into_split();
        let mut w = SharedWriter::new(w);
        let before = open_fds();
        let direct = w.direct();
        assert_eq!(
            open_fds(),
            before,
            "no descriptor per written-through player"
        );
        write_all_vectored(&mut w, &[Bytes::from_static(b"ab")])
            .await
            .unwrap();
        assert_eq!(
            direct.try_write_vectored(&[IoSlice::new(b"cd")]).unwrap(),
            2
        );
        write_all_vectored(&mut w, &[Bytes::from_static(b"ef")])
            .await
            .unwrap();
        drop(direct);
        w.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(
            got, b"abcdef",
            "both sides wrote in turn, then the write side shut"
        );
    }
}
