//! Message decoders: a request (or response) stream in, `Head`, `Data`..., `End` out, one
//! message after another on a keep-alive connection. Each call consumes what it uses from the
//! buffer and returns `Ok(None)` when it needs more. After an error the decoder stays failed:
//! the connection's framing is lost and it must be closed.

use super::chunked::{Chunk, ChunkedDecoder};
use super::framing::{request_framing, response_framing, BodyFraming};
use super::head::{
    find_head_end, parse_request, parse_response, HeaderBlock, RequestHead, ResponseHead,
};
use super::{Http1Error, Limits};
use bytes::{Buf, Bytes, BytesMut};

/// One step of a message.
#[derive(Debug)]
pub enum Message<H> {
    Head(H),
    /// Body bytes as they arrived (de-chunked).
    Data(Bytes),
    /// The message is complete; chunked bodies may end with trailers.
    End(Option<HeaderBlock>),
}

#[derive(Debug)]
enum State {
    /// Waiting for a head; `scanned` bytes of it were searched for its end already.
    Head {
        scanned: usize,
    },
    /// The head said there is no body: `End` comes next without any byte.
    EndPending,
    Length {
        remaining: u64,
    },
    Chunked(ChunkedDecoder),
    /// Everything until the connection closes (a response without length, or an upgraded
    /// connection's bytes).
    UntilClose,
    Failed(Http1Error),
}

/// The machinery both directions share; they differ in how a head is parsed and framed.
#[derive(Debug)]
struct Decoder {
    limits: Limits,
    state: State,
}

impl Decoder {
    fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            state: State::Head { scanned: 0 },
        }
    }

    fn fail<T>(&mut self, e: Http1Error) -> Result<T, Http1Error> {
        self.state = State::Failed(e.clone());
        Err(e)
    }

    fn start_body(&mut self, framing: BodyFraming) {
        self.state = match framing {
            BodyFraming::None => State::EndPending,
            BodyFraming::Length(n) => State::Length { remaining: n },
            BodyFraming::Chunked => State::Chunked(ChunkedDecoder::default()),
            BodyFraming::UntilClose => State::UntilClose,
        };
    }

    /// The body step of whatever message is in progress; `None` while waiting for a head.
    fn body<H>(&mut self, buf: &mut BytesMut) -> Option<Result<Option<Message<H>>, Http1Error>> {
        let next_head = State::Head { scanned: 0 };
        Some(match &mut self.state {
            State::Head { .. } => return None,
            State::Failed(e) => Err(e.clone()),
            State::EndPending => {
                self.state = next_head;
                Ok(Some(Message::End(None)))
            }
            State::Length { remaining } => {
                if buf.is_empty() {
                    return Some(Ok(None));
                }
                let n = (*remaining).min(buf.len() as u64) as usize;
                *remaining -= n as u64;
                if *remaining == 0 {
                    self.state = State::EndPending;
                }
                Ok(Some(Message::Data(buf.split_to(n).freeze())))
            }
            State::Chunked(c) => match c.decode(buf, &self.limits) {
                Ok(Some(Chunk::Data(d))) => Ok(Some(Message::Data(d))),
                Ok(Some(Chunk::End(trailers))) => {
                    self.state = next_head;
                    Ok(Some(Message::End(trailers)))
                }
                Ok(None) => Ok(None),
                Err(e) => self.fail(e),
            },
            State::UntilClose => {
                if buf.is_empty() {
                    Ok(None)
                } else {
                    Ok(Some(Message::Data(buf.split().freeze())))
                }
            }
        })
    }

    /// One step: the body of the message in progress, or the next head. `parse` reads a head
    /// at the start of the buffer (`None` while it is incomplete) and `frame` gives the parsed
    /// head its bytes and says how its body is framed.
    ///
    /// A head usually arrives whole, and one parse finds its end. One that did not is parsed
    /// again only once its empty line is in the buffer, found by a scan that looks at each byte
    /// once: a head trickling in a byte at a time costs one pass, not one parse per byte.
    fn decode_with<H>(
        &mut self,
        buf: &mut BytesMut,
        parse: impl Fn(&[u8], &Limits) -> Result<Option<(H, usize)>, Http1Error>,
        frame: impl FnOnce(&mut H, Bytes) -> Result<BodyFraming, Http1Error>,
    ) -> Result<Option<Message<H>>, Http1Error> {
        if let Some(step) = self.body(buf) {
            return step;
        }
        let scanned = match self.state {
            State::Head { scanned } => scanned,
            _ => 0, // body() answered every other state
        };
        let max = self.limits.max_head_bytes;
        // Where the head ends, once a scan found it (a head that came in pieces); `None` on
        // the first look, when the parser finds the end itself.
        let mut end = None;
        if scanned == 0 {
            // Empty lines before a head are ignored (RFC 9112 §2.2).
            let blank = buf
                .iter()
                .take_while(|b| **b == b'\r' || **b == b'\n')
                .count();
            buf.advance(blank);
        } else {
            match self.head_end(buf, scanned) {
                Ok(Some(e)) => end = Some(e),
                Ok(None) => return Ok(None),
                Err(e) => return self.fail(e),
            }
        }
        let parsed = match end {
            Some(e) => parse(&buf[..e], &self.limits),
            None => parse(buf, &self.limits),
        };
        let (mut head, len) = match parsed {
            Ok(Some(parsed)) => parsed,
            Ok(None) if end.is_some() => {
                // The scan saw an empty line that the parser does not take for the end.
                return self.fail(Http1Error::bad_request("truncated head"));
            }
            Ok(None) if buf.len() <= max => {
                self.state = State::Head { scanned: buf.len() };
                return Ok(None);
            }
            Ok(None) => return self.fail(self.too_large()),
            Err(_) if end.is_none() => {
                // Refused on the first look, maybe before its end arrived: judged again on
                // the whole head, as one that came in pieces is, so that the answer does not
                // depend on where the bytes were cut (a version cut short reads as a 400).
                match self.head_end(buf, 0) {
                    Ok(Some(e)) => match parse(&buf[..e], &self.limits) {
                        Err(e) => return self.fail(e),
                        Ok(_) => return self.fail(Http1Error::bad_request("truncated head")),
                    },
                    Ok(None) => return Ok(None),
                    Err(e) => return self.fail(e),
                }
            }
            Err(e) => return self.fail(e),
        };
        if len > max {
            return self.fail(self.too_large());
        }
        match frame(&mut head, buf.split_to(len).freeze()) {
            Ok(framing) => {
                self.start_body(framing);
                Ok(Some(Message::Head(head)))
            }
            Err(e) => self.fail(e),
        }
    }

    /// Where the head in `buf` ends, searching from `scanned`: `None` (and the search noted)
    /// while its empty line has not arrived.
    fn head_end(&mut self, buf: &[u8], scanned: usize) -> Result<Option<usize>, Http1Error> {
        let max = self.limits.max_head_bytes;
        match find_head_end(buf, scanned) {
            Some(end) if end <= max => Ok(Some(end)),
            None if buf.len() <= max => {
                self.state = State::Head { scanned: buf.len() };
                Ok(None)
            }
            _ => Err(self.too_large()),
        }
    }

    /// A head past `max_head_bytes`: 431.
    fn too_large(&self) -> Http1Error {
        Http1Error {
            status: 431,
            reason: format!("head over {} bytes", self.limits.max_head_bytes),
        }
    }

    fn is_idle(&self) -> bool {
        matches!(self.state, State::Head { scanned: 0 })
    }

    fn eof<H>(&mut self, buf: &BytesMut) -> Result<Option<Message<H>>, Http1Error> {
        match &self.state {
            State::UntilClose => {
                self.state = State::Head { scanned: 0 };
                Ok(Some(Message::End(None)))
            }
            State::Head { .. } if buf.iter().all(|b| *b == b'\r' || *b == b'\n') => Ok(None),
            State::Failed(e) => Err(e.clone()),
            _ => {
                let e = Http1Error::bad_request("connection closed in the middle of a message");
                self.fail(e)
            }
        }
    }
}

/// Decodes the requests a client sends on one connection.
#[derive(Debug)]
pub struct RequestDecoder(Decoder);

impl RequestDecoder {
    pub fn new(limits: Limits) -> RequestDecoder {
        RequestDecoder(Decoder::new(limits))
    }

    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<Message<RequestHead>>, Http1Error> {
        self.0.decode_with(buf, parse_request, |head, raw| {
            head.headers.attach(raw);
            request_framing(&head.headers, head.version)
        })
    }

    /// The client closed its side: the end of a body that runs to the close, nothing between
    /// messages, an error in the middle of one.
    pub fn decode_eof(
        &mut self,
        buf: &BytesMut,
    ) -> Result<Option<Message<RequestHead>>, Http1Error> {
        self.0.eof(buf)
    }

    /// After the upstream accepted an upgrade (101): every further byte is the new protocol's.
    pub fn upgrade(&mut self) {
        self.0.state = State::UntilClose;
    }

    /// Between messages with nothing of the next one read.
    pub fn is_idle(&self) -> bool {
        self.0.is_idle()
    }
}

/// Decodes the responses an upstream sends on one connection.
#[derive(Debug)]
pub struct ResponseDecoder(Decoder);

impl ResponseDecoder {
    pub fn new(limits: Limits) -> ResponseDecoder {
        ResponseDecoder(Decoder::new(limits))
    }

    /// `to_head`: whether the request this response answers was a HEAD (its response has no
    /// body whatever its headers say); read when a head is decoded.
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        to_head: bool,
    ) -> Result<Option<Message<ResponseHead>>, Http1Error> {
        self.0.decode_with(buf, parse_response, |head, raw| {
            head.headers.attach(raw);
            if head.status == 101 {
                // Switching protocols: what follows is the upgraded connection's.
                Ok(BodyFraming::UntilClose)
            } else {
                response_framing(&head.headers, head.status, to_head)
            }
        })
    }

    pub fn decode_eof(
        &mut self,
        buf: &BytesMut,
    ) -> Result<Option<Message<ResponseHead>>, Http1Error> {
        self.0.eof(buf)
    }

    pub fn is_idle(&self) -> bool {
        self.0.is_idle()
    }
}
