//! A body (of a request or a response) that counts the bytes passing
//! through it and says, once, when it is finished with: after its last
//! frame, or when it is dropped early (a client that went away).

use axum::body::{Bytes, HttpBody};
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Called with the bytes passed and whether the body reached its end.
pub type OnEnd = Box<dyn FnOnce(u64, bool) + Send>;

/// Wraps `inner`, keeping its size hint (so a `Content-Length` stays).
pub struct Counting<B: HttpBody> {
    inner: B,
    bytes: u64,
    on_end: Option<OnEnd>,
}

impl<B: HttpBody> Counting<B> {
    pub fn new(inner: B, on_end: OnEnd) -> Self {
        Counting {
            inner,
            bytes: 0,
            on_end: Some(on_end),
        }
    }

    fn end(&mut self, complete: bool) {
        if let Some(f) = self.on_end.take() {
            f(self.bytes, complete);
        }
    }
}

impl<B> HttpBody for Counting<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    self.bytes += d.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.end(true);
                }
            }
            Poll::Ready(None) => self.end(true),
            Poll::Ready(Some(Err(_))) => self.end(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: HttpBody> Drop for Counting<B> {
    fn drop(&mut self) {
        // Not reported yet: complete only if nothing was left to read.
        let done = self.inner.is_end_stream();
        self.end(done);
    }
}
