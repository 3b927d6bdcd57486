//! What the listener learns from the bodies passing through it: how many bytes each request and response body
//! carried ([`BodyBytes`], for the request log and metrics), and, for two checks s3s does not make:
//!
//! - DeleteObjects: s3s reads the XML body whole and hands none of it on, so the body's `Content-MD5` or
//!   `x-amz-checksum-*` could not be checked. [`CapturedBody`] keeps the bytes as s3s reads them and
//!   [`verify_captured_body`] checks them with the same [`DeclaredIntegrity`] as object data.
//! - aws-chunked bodies: s3s accepts one that stops after any chunk, without the zero-length chunk that ends it (the
//!   decoded length still matches when every data chunk came). [`ChunkedBodyEnd`] follows the chunk framing of the
//!   body as sent and tells the object path whether that final chunk arrived.
//!
//! [`install`] taps the requests that need it and puts the tap's handle into the request's extensions, where the
//! operations find it; [`tapped`] taps a response body. A tap only looks at the bytes passing through; s3s still
//! parses and verifies them.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use http::{Method, Request};
use s3s::stream::{ByteStream, DynByteStream, RemainingLength};
use s3s::{s3_error, Body, S3Result, StdError};

use crate::checksum::DeclaredIntegrity;
use crate::errors::internal;

/// Taps `request`'s body: to count its bytes (returned), and if an operation needs to know something about it that
/// s3s does not tell (see the module documentation).
pub fn install(request: &mut Request<Body>) -> BodyBytes {
    let received = BodyBytes::default();
    tap(request, received.clone());
    if is_delete_objects(request) {
        tap(request, CapturedBody::default());
    }
    if is_aws_chunked(request) {
        tap(request, ChunkedBodyEnd::default());
    }
    received
}

/// `POST /bucket?delete`, as s3s routes it.
fn is_delete_objects(request: &Request<Body>) -> bool {
    request.method() == Method::POST
        && request.uri().query().is_some_and(|query| {
            query.split('&').any(|pair| pair.split_once('=').map_or(pair, |(name, _)| name) == "delete")
        })
}

/// Every `x-amz-content-sha256` value s3s decodes as aws-chunked starts with `STREAMING-`.
fn is_aws_chunked(request: &Request<Body>) -> bool {
    request.headers().get("x-amz-content-sha256").is_some_and(|value| value.as_bytes().starts_with(b"STREAMING-"))
}

/// Something that sees every chunk of a body; clones share what it saw.
pub trait Observer: Clone + Send + Sync + Unpin + 'static {
    fn observe(&self, chunk: &Bytes);
}

fn tap<O: Observer>(request: &mut Request<Body>, observer: O) {
    request.extensions_mut().insert(observer.clone());
    let body = std::mem::take(request.body_mut());
    *request.body_mut() = tapped(body, observer);
}

/// `body`, showing every chunk to `observer` as it is read; the observer is dropped with the body.
pub fn tapped<O: Observer>(body: Body, observer: O) -> Body {
    let tapped: DynByteStream = Box::pin(Tap { body, observer });
    Body::from(tapped)
}

/// A body that shows every chunk to an [`Observer`] on its way through.
struct Tap<O> {
    body: Body,
    observer: O,
}

impl<O: Observer> Stream for Tap<O> {
    type Item = Result<Bytes, StdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = std::task::ready!(Pin::new(&mut self.body).poll_next(cx));
        if let Some(Ok(chunk)) = &item {
            self.observer.observe(chunk);
        }
        Poll::Ready(item)
    }
}

impl<O: Observer> ByteStream for Tap<O> {
    fn remaining_length(&self) -> RemainingLength {
        self.body.remaining_length()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How many bytes of a body went through so far; clones share the count.
#[derive(Clone, Debug, Default)]
pub struct BodyBytes(Arc<AtomicU64>);

impl BodyBytes {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Observer for BodyBytes {
    fn observe(&self, chunk: &Bytes) {
        self.0.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
}

/// The bytes of a DeleteObjects body as s3s read it. s3s's own body-size limit bounds what it holds. The bytes are
/// the body as sent: s3s refuses an aws-chunked XML body (`IncompleteBody`), so no encoded body reaches the
/// operation.
#[derive(Clone, Debug, Default)]
pub struct CapturedBody(Arc<Mutex<Vec<Bytes>>>);

impl Observer for CapturedBody {
    fn observe(&self, chunk: &Bytes) {
        lock(&self.0).push(chunk.clone());
    }
}

/// Checks what a request whose body s3s read whole declares about that body (Content-MD5, `x-amz-checksum-*`)
/// against the bytes [`CapturedBody`] kept: `BadDigest` on a mismatch, before the operation changes anything.
pub fn verify_captured_body(integrity: DeclaredIntegrity, captured: Option<&CapturedBody>) -> S3Result<()> {
    if !integrity.expects_a_value() {
        return Ok(());
    }
    let captured =
        captured.ok_or_else(|| internal(&"the listener did not capture a body whose digests are checked"))?;
    let mut digests = integrity.digests(false);
    for chunk in lock(&captured.0).iter() {
        digests.update(chunk);
    }
    integrity.verify(&digests.finish())
}

/// The longest chunk header s3s accepts (`hex-size[;chunk-signature=…]` and CRLF); a longer one fails in s3s.
const MAX_CHUNK_HEADER: usize = 1024;

/// Where an aws-chunked body is in its framing: `hex-size[;chunk-signature=…]\r\n`, that many bytes, `\r\n`, and
/// so on until a chunk of size 0 (then trailers, which s3s reads).
#[derive(Debug)]
enum Framing {
    /// Reading a chunk header: the bytes of it so far.
    Header(Vec<u8>),
    /// Inside a chunk: bytes left of its data and the CRLF after it.
    Data(u64),
    /// The zero-length chunk came.
    Ended,
    /// Not aws-chunked framing; s3s refuses such a body on its own.
    Malformed,
}

impl Default for Framing {
    fn default() -> Self {
        Self::Header(Vec::new())
    }
}

impl Framing {
    fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self {
                Framing::Header(header) => {
                    let Some(end) = bytes.iter().position(|&b| b == b'\n') else {
                        header.extend_from_slice(bytes);
                        if header.len() > MAX_CHUNK_HEADER {
                            *self = Framing::Malformed;
                        }
                        return;
                    };
                    header.extend_from_slice(&bytes[..=end]);
                    bytes = &bytes[end + 1..];
                    *self = match chunk_size(header) {
                        Some(0) => Framing::Ended,
                        Some(size) => Framing::Data(size + 2),
                        None => Framing::Malformed,
                    };
                }
                Framing::Data(left) => {
                    let taken = bytes.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    bytes = &bytes[taken..];
                    *left -= taken as u64;
                    if *left == 0 {
                        *self = Framing::default();
                    }
                }
                Framing::Ended | Framing::Malformed => return,
            }
        }
    }
}

/// The size a chunk header declares: the hex digits before `;` or CR.
fn chunk_size(header: &[u8]) -> Option<u64> {
    let digits = header.split(|&b| b == b';' || b == b'\r').next()?;
    u64::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok().filter(|size| *size <= u64::MAX - 2)
}

/// Whether an aws-chunked body ended with its zero-length chunk, followed as the body is sent.
#[derive(Clone, Debug, Default)]
pub struct ChunkedBodyEnd(Arc<Mutex<Framing>>);

impl Observer for ChunkedBodyEnd {
    fn observe(&self, chunk: &Bytes) {
        lock(&self.0).advance(chunk);
    }
}

impl ChunkedBodyEnd {
    /// Once the decoded body has ended: `IncompleteBody` unless the zero-length chunk came (s3s reads the body as
    /// sent to its end before the decoded body ends).
    pub fn check(&self) -> S3Result<()> {
        match *lock(&self.0) {
            Framing::Ended => Ok(()),
            _ => Err(s3_error!(
                IncompleteBody,
                "The aws-chunked request body ended without its final zero-length chunk."
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing_after(pieces: &[&[u8]]) -> Framing {
        let mut framing = Framing::default();
        for piece in pieces {
            framing.advance(piece);
        }
        framing
    }

    #[test]
    fn the_zero_length_chunk_ends_the_body_however_the_bytes_are_split() {
        let signature = "a".repeat(64);
        let body = format!(
            "5;chunk-signature={signature}\r\nhello\r\n10;chunk-signature={signature}\r\n0123456789abcdef\r\n\
             0;chunk-signature={signature}\r\n\r\n"
        );
        let body = body.as_bytes();
        assert!(matches!(framing_after(&[body]), Framing::Ended));
        for split in 1..body.len() {
            assert!(matches!(framing_after(&[&body[..split], &body[split..]]), Framing::Ended), "split at {split}");
        }
        let bytewise: Vec<&[u8]> = body.chunks(1).collect();
        assert!(matches!(framing_after(&bytewise), Framing::Ended));
        // Unsigned chunks and trailers after the last one.
        assert!(matches!(framing_after(&[b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"]), Framing::Ended));
    }

    #[test]
    fn a_body_that_stops_after_a_data_chunk_has_not_ended() {
        let signature = "b".repeat(64);
        let body = format!("5;chunk-signature={signature}\r\nhello\r\n");
        assert!(matches!(framing_after(&[body.as_bytes()]), Framing::Header(_)));
        // Data that merely contains what looks like a final chunk is data.
        assert!(matches!(framing_after(&[b"5\r\n0\r\n\r\n\r\n"]), Framing::Header(_)));
        assert!(matches!(framing_after(&[b"zz\r\n"]), Framing::Malformed));
        assert!(matches!(framing_after(&[&[b'1'; MAX_CHUNK_HEADER + 1]]), Framing::Malformed));
        let end = ChunkedBodyEnd::default();
        end.observe(&Bytes::from_static(b"3\r\nabc\r\n"));
        assert_eq!(end.check().unwrap_err().code(), &s3s::S3ErrorCode::IncompleteBody);
        end.observe(&Bytes::from_static(b"0\r\n\r\n"));
        assert!(end.check().is_ok());
    }
}
