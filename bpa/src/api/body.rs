//! Payload bodies that stream: a stored bundle's payload read from its file as the client takes
//! it, a chunk at a time (design §3.4: memory does not grow with the bundle's size).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, ReadBuf};

/// Bytes read from the file per frame.
const CHUNK: usize = 64 * 1024;

/// An HTTP body of exactly `length` bytes read from `reader`.
#[derive(Debug)]
pub(super) struct ReaderBody<R> {
    reader: R,
    remaining: u64,
    buffer: Box<[u8]>,
}

impl<R> ReaderBody<R> {
    pub(super) fn new(reader: R, length: u64) -> ReaderBody<R> {
        ReaderBody { reader, remaining: length, buffer: vec![0; CHUNK].into_boxed_slice() }
    }
}

impl<R: AsyncRead + Unpin> http_body::Body for ReaderBody<R> {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = this.remaining.min(CHUNK as u64) as usize;
        let mut buf = ReadBuf::new(&mut this.buffer[..want]);
        ready!(Pin::new(&mut this.reader).poll_read(cx, &mut buf))?;
        let filled = buf.filled();
        if filled.is_empty() {
            return Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the stored payload ended {} bytes early", this.remaining),
            ))));
        }
        this.remaining -= filled.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(filled)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
