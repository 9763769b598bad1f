//! Range requests answered by the cache (RFC 9110 §14, issue #12 A1): a `GET` with one byte range gets a
//! `206` (or a `416`) from a stored copy in either tier, and on a miss from the whole object fetched for the
//! tiers. [`apply`] turns the cache's `200` into that answer, in one place for every way a response is made.
//!
//! - From the edge tier, the body is sliced in memory.
//! - From the reserve, only the bytes asked for are read ([`crate::storage::bodies::BodyStore::open_range`]);
//!   such a response carries [`PreRead`].
//! - On a miss the origin is asked for the whole object (no `Range`), as Cloudflare does for cacheable
//!   content; the client gets its range as the body streams by. When the response fills a tier (it carries
//!   [`Filling`]), the rest of the body is still read after the range is sent, so the tiers get the object.
//!   When it fills nothing and the range skips bytes ([`skips_bytes`]), the pipeline drops it and asks the
//!   origin for the range itself; a range from byte 0 is cut from the stream and the rest dropped.

use std::{
    ops::Range,
    pin::Pin,
    task::{Context, Poll},
    time::SystemTime,
};

use axum::body::Body;
use bytes::Bytes;
use http::{
    HeaderValue, Method, Response, StatusCode,
    header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE},
    request,
};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;

use super::{
    Ctx,
    admit::content_length,
    coalesce::FillGuard,
    origin::{OriginBody, OriginResponseBody},
    respond::Answer,
};
use crate::http_cache::range::{self, Decision};
use crate::metrics::CacheStatus;

/// On a response: its body is already bytes `.0` of the representation (read from the reserve).
#[derive(Debug, Clone)]
pub struct PreRead(pub Range<u64>);

/// On a response: its body fills a tier, so it is read to its end even when the client wants less.
#[derive(Debug, Clone, Copy)]
pub struct Filling;

/// The answer to the request's `Range`, if it has one, from the cache's answer: a `200` with a known
/// `Content-Length` becomes a `206` or a `416`; anything else (no range, several ranges, `If-Range` not
/// matching, another status, unknown length) is sent as it is.
pub fn apply(request: &request::Parts, mut response: Response<Body>) -> Response<Body> {
    let pre = response.extensions_mut().remove::<PreRead>();
    let filling = response.extensions_mut().remove::<Filling>().is_some();
    let asks = pre.is_some() || request.headers.contains_key(RANGE);
    if !asks || request.method != Method::GET || response.status() != StatusCode::OK {
        return response;
    }
    let Some(length) = content_length(response.headers()) else { return response };
    if let Some(PreRead(part)) = pre {
        return if part.is_empty() { unsatisfiable(response, length, false) } else { partial(response, &part, length) };
    }
    let Some(asked) = range::asked(&request.headers) else { return response };
    if !range::if_range_holds(&request.headers, response.headers()) {
        return response;
    }
    match range::decide(asked, length) {
        Decision::Whole => response,
        Decision::Partial(part) => {
            let (parts, body) = response.into_parts();
            let sliced = Slice { inner: Some(body), at: 0, range: part.clone(), drain_rest: filling };
            partial(Response::from_parts(parts, Body::new(sliced)), &part, length)
        }
        Decision::Unsatisfiable => unsatisfiable(response, length, filling),
    }
}

/// A `416` for a representation of `length` bytes; its body is drained if it fills a tier.
fn unsatisfiable(response: Response<Body>, length: u64, filling: bool) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    if filling {
        drain(body);
    }
    parts.status = StatusCode::RANGE_NOT_SATISFIABLE;
    parts.headers.insert(CONTENT_RANGE, range::unsatisfied_range(length));
    parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(0));
    Response::from_parts(parts, Body::empty())
}

/// Whether the request is a `GET` whose one range starts past the first byte (or counts from the end): cut
/// from a whole response, it would read bytes the client does not get.
pub fn skips_bytes(request: &request::Parts) -> bool {
    request.method == Method::GET
        && matches!(
            range::asked(&request.headers),
            Some(range::Asked::One(range::Spec::Suffix(_) | range::Spec::From { first: 1.., .. }))
        )
}

/// A `206` for `part` of `length` bytes; the body is already that part.
fn partial(mut response: Response<Body>, part: &Range<u64>, length: u64) -> Response<Body> {
    *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    let h = response.headers_mut();
    h.insert(CONTENT_RANGE, range::content_range(part, length));
    h.insert(CONTENT_LENGTH, HeaderValue::from(part.end - part.start));
    response
}

/// Reads a body to its end in the background (so that the tiers it fills get all of it).
fn drain(body: Body) {
    tokio::spawn(async move {
        let mut body = body;
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                break;
            }
        }
    });
}

/// Bytes `range` of a body, as they stream by; at the range's end the rest is drained (`drain_rest`) or
/// dropped.
struct Slice {
    inner: Option<Body>,
    /// Bytes of the inner body seen so far.
    at: u64,
    range: Range<u64>,
    drain_rest: bool,
}

impl Slice {
    fn finish(&mut self) {
        if let Some(rest) = self.inner.take()
            && self.drain_rest
            && !rest.is_end_stream()
        {
            drain(rest);
        }
    }
}

impl http_body::Body for Slice {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        loop {
            if self.at >= self.range.end {
                self.finish();
                return Poll::Ready(None);
            }
            let Some(inner) = self.inner.as_mut() else { return Poll::Ready(None) };
            let frame = match std::task::ready!(Pin::new(inner).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => {
                    self.inner = None;
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    // Shorter than its Content-Length: the client sees the body cut short.
                    self.inner = None;
                    return Poll::Ready(Some(Err(axum::Error::new("the body ended before the range"))));
                }
            };
            let Ok(data) = frame.into_data() else { continue };
            let (start, end) = (self.at, self.at + data.len() as u64);
            self.at = end;
            let from = self.range.start.max(start);
            let to = self.range.end.min(end);
            if from < to {
                let part = data.slice((from - start) as usize..(to - start) as usize);
                return Poll::Ready(Some(Ok(Frame::data(part))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.at >= self.range.end || self.inner.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let left = self.range.end.saturating_sub(self.range.start.max(self.at));
        SizeHint::with_exact(if self.inner.is_none() { 0 } else { left })
    }
}

impl Drop for Slice {
    /// A client that leaves mid-range leaves the fill to its usual fate (given up with the client).
    fn drop(&mut self) {
        if self.at >= self.range.end {
            self.finish();
        }
    }
}

impl Ctx {
    /// `fill`; but a range request whose range skips bytes, answered with a response that fills no
    /// tier, would read the whole object from the origin to send a part of it: that response is dropped and
    /// the request goes to the origin as sent, range and all (`BYPASS`), as Cloudflare does for content it
    /// does not cache.
    pub(super) async fn fill_or_pass(
        &self,
        resp: Response<OriginResponseBody>,
        sent: SystemTime,
        guard: Option<FillGuard>,
        status: CacheStatus,
    ) -> Answer {
        let answer = self.fill(resp, sent, guard, status);
        let fills = answer.response.extensions().get::<Filling>().is_some();
        if !fills && answer.response.status() == StatusCode::OK && skips_bytes(&self.parts) {
            drop(answer);
            return self.pass(OriginBody::None, CacheStatus::Bypass).await;
        }
        answer
    }
}
