//! Busy polling on a server's sockets: after a read finds no data, reads poll again at once for
//! a short window instead of parking the task.
//!
//! A party that parks on an empty socket is woken by the kernel when the next frame arrives,
//! and on a multi-core host (above all a virtual machine) the wakeup is an inter-processor
//! interrupt that the *sender's* system call pays for. Between the layers of a query the client
//! computes for tens of microseconds, so a server that keeps polling through that gap receives
//! the next frame without a wakeup (docs/suites/verify.md, *Cost*, has what it saves the verify
//! client). The window is short and restarts only when data arrives, so an idle connection
//! polls for at most [`WINDOW`] and then parks.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How long reads keep polling once they start finding no data.
pub const WINDOW: Duration = Duration::from_micros(300);

/// A stream whose reads, once enabled, for [`WINDOW`] after they first find nothing, ask to be
/// polled again at once (the task yields and the runtime comes straight back) instead of waiting
/// for the kernel's readiness event. Writes pass through.
///
/// The cost is the server's: up to [`WINDOW`] of a core per frame received, so a server enables
/// it only once the peer has authenticated (an anonymous peer trickling bytes must not keep a
/// worker spinning).
#[derive(Debug)]
pub struct BusyPoll<S> {
    inner: S,
    enabled: bool,
    /// When the current run of empty reads began.
    empty_since: Option<Instant>,
}

impl<S> BusyPoll<S> {
    /// `inner`, read as usual until [`enable`](Self::enable) is called.
    pub fn new(inner: S) -> Self {
        Self { inner, enabled: false, empty_since: None }
    }

    /// Busy-polls the reads from now on.
    pub fn enable(&mut self) {
        self.enabled = true;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for BusyPoll<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let me = &mut *self;
        match Pin::new(&mut me.inner).poll_read(cx, buf) {
            Poll::Pending => {
                // The inner stream registered the waker with the reactor as well, so a frame
                // that arrives after the window still wakes the task.
                if me.enabled && me.empty_since.get_or_insert_with(Instant::now).elapsed() < WINDOW {
                    cx.waker().wake_by_ref();
                }
                Poll::Pending
            }
            ready => {
                me.empty_since = None;
                ready
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for BusyPoll<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Enabled, within the window an empty read asks to be polled again at once; after it, and
    /// before it is enabled, it waits.
    #[tokio::test]
    async fn empty_reads_poll_again_only_within_the_window() {
        let (a, _b) = tokio::io::duplex(64);
        let mut stream = BusyPoll::new(a);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut bytes = [0u8; 8];
        let mut poll = |stream: &mut BusyPoll<_>| {
            let mut buf = ReadBuf::new(&mut bytes);
            Pin::new(stream).poll_read(&mut cx, &mut buf).is_pending()
        };
        assert!(poll(&mut stream));
        assert_eq!(count.0.load(Ordering::SeqCst), 0, "not polling before it is enabled");
        stream.enable();
        assert!(poll(&mut stream));
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken at once inside the window");
        std::thread::sleep(WINDOW * 2);
        assert!(poll(&mut stream));
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "parked after the window");
    }

    /// A frame that arrives long after the window still wakes the reader, and the window starts
    /// afresh after data.
    #[tokio::test]
    async fn data_after_the_window_is_read() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut stream = BusyPoll::new(a);
        stream.enable();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(WINDOW * 20).await;
            b.write_all(b"frame").await.unwrap();
            b
        });
        let mut got = [0u8; 5];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"frame");
        assert!(stream.empty_since.is_none());
        drop(writer.await.unwrap());
    }
}
