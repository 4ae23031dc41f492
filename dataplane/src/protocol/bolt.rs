//! SOFA Bolt, versions 1 and 2 (the protocol SOFARPC runs on), as an X-Protocol codec.
//!
//! v1 request header: 22 bytes, response 20. v2 inserts `ver1` after the magic and `switch` after
//! the codec byte (24 / 22 bytes) and, when `ver1 >= 2` and switch bit 0 is set, appends a
//! CRC32 of the whole frame. Both versions may share a connection: the layout is chosen per
//! frame from its first byte. Field offsets are named in [`Layout`], computed once per frame.

use super::crc32::crc32;
use super::hessian;
use super::xprotocol::{Codec, CodecError, Detection, FrameHead, FrameKind, LocalReply};
use bytes::{BufMut, BytesMut};
use std::borrow::Cow;

pub const PROTO_V1: u8 = 0x01;
pub const PROTO_V2: u8 = 0x02;

const TYPE_RESPONSE: u8 = 0;
const TYPE_REQUEST: u8 = 1;
const TYPE_ONEWAY: u8 = 2;

const CMD_HEARTBEAT: u16 = 0;
const CMD_REQUEST: u16 = 1;
const CMD_RESPONSE: u16 = 2;

/// Bolt response status codes.
pub mod status {
    pub const SUCCESS: u16 = 0x00;
    pub const ERROR: u16 = 0x01;
    pub const SERVER_EXCEPTION: u16 = 0x02;
    pub const UNKNOWN: u16 = 0x03;
    pub const SERVER_THREADPOOL_BUSY: u16 = 0x04;
    pub const ERROR_COMM: u16 = 0x05;
    pub const NO_PROCESSOR: u16 = 0x06;
    pub const TIMEOUT: u16 = 0x07;
    pub const CLIENT_SEND_ERROR: u16 = 0x08;
    pub const CODEC_EXCEPTION: u16 = 0x09;
    pub const CONNECTION_CLOSED: u16 = 0x10;
    pub const SERVER_SERIAL_EXCEPTION: u16 = 0x11;
    pub const SERVER_DESERIAL_EXCEPTION: u16 = 0x12;
}

/// The class SOFARPC puts in requests; its hessian2 body starts with the method name.
const SOFA_REQUEST_CLASS: &[u8] = b"com.alipay.sofa.rpc.core.request.SofaRequest";
const CODEC_HESSIAN2: u8 = 1;

/// Where each field of one frame lives.
#[derive(Clone, Copy, Debug)]
struct Layout {
    proto: u8,
    header_len: usize,
    type_at: usize,
    cmd_at: usize,
    ver2_at: usize,
    id_at: usize,
    codec_at: usize,
    /// v2 only.
    switch_at: Option<usize>,
    /// Requests carry a timeout, responses a status.
    timeout_at: Option<usize>,
    status_at: Option<usize>,
    class_len_at: usize,
    header_len_at: usize,
    content_len_at: usize,
    crc: bool,
}

impl Layout {
    /// The layout of the frame starting `buf`, once enough bytes are there to tell.
    fn of(buf: &[u8]) -> Result<Option<Layout>, CodecError> {
        let Some(&proto) = buf.first() else {
            return Ok(None);
        };
        let (v2, type_at) = match proto {
            PROTO_V1 => (false, 1),
            PROTO_V2 => (true, 2),
            other => return Err(CodecError::UnknownMagic(other)),
        };
        let Some(&ty) = buf.get(type_at) else {
            return Ok(None);
        };
        if ty > TYPE_ONEWAY {
            return Err(CodecError::Malformed(format!("unknown Bolt type {ty}")));
        }
        let response = ty == TYPE_RESPONSE;
        // v2 shifts everything after the magic by one (ver1) and after the codec by another (switch).
        let s = usize::from(v2);
        let id_at = 5 + s;
        let codec_at = 9 + s;
        let after_codec = codec_at + 1 + s;
        let (timeout_at, status_at, lens_at) = if response {
            (None, Some(after_codec), after_codec + 2)
        } else {
            (Some(after_codec), None, after_codec + 4)
        };
        let header_len = lens_at + 8;
        let crc = v2 && buf.len() >= 12 && buf[1] >= 2 && buf[11] & 1 == 1;
        if v2 && buf.len() < 12 {
            return Ok(None);
        }
        Ok(Some(Layout {
            proto,
            header_len,
            type_at,
            cmd_at: type_at + 1,
            ver2_at: type_at + 3,
            id_at,
            codec_at,
            switch_at: v2.then_some(11),
            timeout_at,
            status_at,
            class_len_at: lens_at,
            header_len_at: lens_at + 2,
            content_len_at: lens_at + 4,
            crc,
        }))
    }

    fn body_lens(&self, buf: &[u8]) -> (usize, usize, u64) {
        (
            usize::from(be16(buf, self.class_len_at)),
            usize::from(be16(buf, self.header_len_at)),
            u64::from(be32(buf, self.content_len_at)),
        )
    }

    /// The header map's bytes of a whole frame.
    fn header_map<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        let (class_len, header_len, _) = self.body_lens(frame);
        let start = self.header_len + class_len;
        frame.get(start..start + header_len).unwrap_or(&[])
    }

    fn class<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        let (class_len, _, _) = self.body_lens(frame);
        frame
            .get(self.header_len..self.header_len + class_len)
            .unwrap_or(&[])
    }

    fn content<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        let (class_len, header_len, content_len) = self.body_lens(frame);
        let start = self.header_len + class_len + header_len;
        frame
            .get(start..start + content_len as usize)
            .unwrap_or(&[])
    }
}

/// Header values are UTF-8 in practice; borrow them as they are, and only copy when not.
fn text(v: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(v) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(v),
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Iterates a Bolt header map: repeated `[u32 len][key][u32 len][value]`. `None` from
/// [`HeaderIter::check`] when the map is cut short.
struct HeaderIter<'a> {
    rest: &'a [u8],
}

impl<'a> HeaderIter<'a> {
    fn field(&mut self) -> Option<&'a [u8]> {
        if self.rest.len() < 4 {
            return None;
        }
        let n = be32(self.rest, 0) as usize;
        let body = self.rest.get(4..4 + n)?;
        self.rest = &self.rest[4 + n..];
        Some(body)
    }

    /// Whether the whole map is well formed.
    fn check(mut self) -> bool {
        while !self.rest.is_empty() {
            if self.field().is_none() || self.field().is_none() {
                return false;
            }
        }
        true
    }
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a [u8], &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let k = self.field()?;
        let v = self.field()?;
        Some((k, v))
    }
}

/// The Bolt codec (stateless).
#[derive(Debug, Default, Clone, Copy)]
pub struct Bolt;

impl Bolt {
    fn layout(frame: &[u8]) -> Option<Layout> {
        Layout::of(frame).ok().flatten()
    }

    fn put_reply(request: &[u8], cmd: u16, status: u16, out: &mut BytesMut) {
        let Some(l) = Self::layout(request) else {
            return;
        };
        let start = out.len();
        out.put_u8(l.proto);
        if l.proto == PROTO_V2 {
            out.put_u8(request[1]);
        }
        out.put_u8(TYPE_RESPONSE);
        out.put_u16(cmd);
        out.put_u8(request[l.ver2_at]);
        out.put_slice(&request[l.id_at..l.id_at + 4]);
        out.put_u8(request[l.codec_at]);
        if let Some(s) = l.switch_at {
            out.put_u8(request[s]);
        }
        out.put_u16(status);
        out.put_u16(0); // class
        out.put_u16(0); // header map
        out.put_u32(0); // content
        if l.crc {
            let c = crc32(&out[start..]);
            out.put_u32(c);
        }
    }
}

impl Codec for Bolt {
    fn name(&self) -> &'static str {
        "bolt"
    }

    fn detect(&self, prefix: &[u8]) -> Detection {
        match prefix {
            [] => Detection::NeedMore,
            [PROTO_V1] | [PROTO_V2] | [PROTO_V2, _] => Detection::NeedMore,
            [PROTO_V1, ty, ..] if *ty <= TYPE_ONEWAY => Detection::Match,
            [PROTO_V2, ver1, ty, ..] if (1..=2).contains(ver1) && *ty <= TYPE_ONEWAY => {
                Detection::Match
            }
            _ => Detection::NoMatch,
        }
    }

    fn decode(&self, buf: &[u8], max_frame: usize) -> Result<Option<FrameHead>, CodecError> {
        let Some(l) = Layout::of(buf)? else {
            return Ok(None);
        };
        if buf.len() < l.header_len {
            return Ok(None);
        }
        let (class_len, header_len, content_len) = l.body_lens(buf);
        let len = l.header_len as u64
            + class_len as u64
            + header_len as u64
            + content_len
            + if l.crc { 4 } else { 0 };
        if len > max_frame as u64 {
            return Err(CodecError::TooLarge {
                len,
                limit: max_frame,
            });
        }
        let len = len as usize;
        if buf.len() < len {
            return Ok(None);
        }
        let frame = &buf[..len];
        if l.crc {
            let carried = be32(frame, len - 4);
            let computed = crc32(&frame[..len - 4]);
            if carried != computed {
                return Err(CodecError::BadChecksum { carried, computed });
            }
        }
        let ty = frame[l.type_at];
        let cmd = be16(frame, l.cmd_at);
        let kind = match (ty, cmd) {
            (TYPE_RESPONSE, CMD_HEARTBEAT) => FrameKind::HeartbeatAck,
            (TYPE_RESPONSE, CMD_RESPONSE) => FrameKind::Response,
            (TYPE_REQUEST, CMD_HEARTBEAT) => FrameKind::Heartbeat,
            (TYPE_REQUEST, CMD_REQUEST) => FrameKind::Request,
            (TYPE_ONEWAY, CMD_REQUEST) => FrameKind::Oneway,
            (ty, cmd) => {
                return Err(CodecError::Malformed(format!(
                    "Bolt type {ty} with command code {cmd}"
                )))
            }
        };
        if header_len > 0
            && !(HeaderIter {
                rest: l.header_map(frame),
            })
            .check()
        {
            return Err(CodecError::Malformed("Bolt header map is cut short".into()));
        }
        Ok(Some(FrameHead {
            kind,
            request_id: u64::from(be32(frame, l.id_at)),
            len,
            timeout_ms: l.timeout_at.map_or(0, |at| be32(frame, at)),
            status: l.status_at.map_or(0, |at| be16(frame, at)),
        }))
    }

    fn max_request_id(&self) -> u64 {
        u64::from(u32::MAX)
    }

    fn set_request_id(&self, frame: &mut [u8], id: u64) {
        let Some(l) = Self::layout(frame) else {
            return;
        };
        let id = id as u32;
        if frame.len() < l.id_at + 4 {
            return;
        }
        frame[l.id_at..l.id_at + 4].copy_from_slice(&id.to_be_bytes());
        if l.crc && frame.len() >= 4 {
            let n = frame.len() - 4;
            let c = crc32(&frame[..n]);
            frame[n..].copy_from_slice(&c.to_be_bytes());
        }
    }

    fn header<'a>(&self, frame: &'a [u8], name: &str) -> Option<&'a [u8]> {
        let l = Self::layout(frame)?;
        HeaderIter {
            rest: l.header_map(frame),
        }
        .find(|(k, _)| *k == name.as_bytes())
        .map(|(_, v)| v)
    }

    fn service<'a>(&self, frame: &'a [u8]) -> Option<Cow<'a, str>> {
        let v = self
            .header(frame, "service")
            .or_else(|| self.header(frame, "sofa_head_target_service"))?;
        Some(text(v))
    }

    fn method<'a>(&self, frame: &'a [u8]) -> Option<Cow<'a, str>> {
        if let Some(v) = self.header(frame, "sofa_head_method_name") {
            return Some(text(v));
        }
        // Clients that put the method only in the body (sofa-rpc-node does): SofaRequest's first
        // field is methodName, readable without deserialising the rest.
        let l = Self::layout(frame)?;
        if frame[l.codec_at] != CODEC_HESSIAN2 || l.class(frame) != SOFA_REQUEST_CLASS {
            return None;
        }
        hessian::first_field_string(l.content(frame), "methodName").map(Cow::Owned)
    }

    fn local_reply(&self, request: &[u8], reply: LocalReply, out: &mut BytesMut) {
        let (cmd, code) = match reply {
            LocalReply::HeartbeatAck => (CMD_HEARTBEAT, status::SUCCESS),
            LocalReply::NoRoute => (CMD_RESPONSE, status::NO_PROCESSOR),
            LocalReply::Timeout => (CMD_RESPONSE, status::TIMEOUT),
            LocalReply::ConnectionClosed => (CMD_RESPONSE, status::CONNECTION_CLOSED),
            LocalReply::Overloaded => (CMD_RESPONSE, status::SERVER_THREADPOOL_BUSY),
        };
        Self::put_reply(request, cmd, code, out);
    }

    fn heartbeat(&self, id: u64, out: &mut BytesMut) {
        out.put_u8(PROTO_V1);
        out.put_u8(TYPE_REQUEST);
        out.put_u16(CMD_HEARTBEAT);
        out.put_u8(1); // ver2
        out.put_u32(id as u32);
        out.put_u8(CODEC_HESSIAN2);
        out.put_u32(1000); // timeout ms
        out.put_u16(0);
        out.put_u16(0);
        out.put_u32(0);
    }

    fn is_success(&self, status: u16) -> bool {
        status == status::SUCCESS
    }
}

/// Encodes a Bolt v1 or v2 request with a header map, for tests, health checks and the load
/// generator (the proxy itself never re-encodes a forwarded frame).
pub struct RequestSpec<'a> {
    pub proto: u8,
    /// v2 only: the protocol version byte; 2 with `crc` appends a CRC32.
    pub ver1: u8,
    pub crc: bool,
    pub oneway: bool,
    pub request_id: u32,
    pub timeout_ms: u32,
    pub class: &'a [u8],
    pub headers: &'a [(&'a str, &'a str)],
    pub content: &'a [u8],
}

impl RequestSpec<'_> {
    pub fn encode(&self, out: &mut BytesMut) {
        let start = out.len();
        out.put_u8(self.proto);
        if self.proto == PROTO_V2 {
            out.put_u8(self.ver1);
        }
        out.put_u8(if self.oneway {
            TYPE_ONEWAY
        } else {
            TYPE_REQUEST
        });
        out.put_u16(CMD_REQUEST);
        out.put_u8(1);
        out.put_u32(self.request_id);
        out.put_u8(CODEC_HESSIAN2);
        if self.proto == PROTO_V2 {
            out.put_u8(u8::from(self.crc));
        }
        out.put_u32(self.timeout_ms);
        let header_len: usize = self
            .headers
            .iter()
            .map(|(k, v)| 8 + k.len() + v.len())
            .sum();
        out.put_u16(self.class.len() as u16);
        out.put_u16(header_len as u16);
        out.put_u32(self.content.len() as u32);
        out.put_slice(self.class);
        for (k, v) in self.headers {
            out.put_u32(k.len() as u32);
            out.put_slice(k.as_bytes());
            out.put_u32(v.len() as u32);
            out.put_slice(v.as_bytes());
        }
        out.put_slice(self.content);
        if self.proto == PROTO_V2 && self.crc && self.ver1 >= 2 {
            let c = crc32(&out[start..]);
            out.put_u32(c);
        }
    }
}

/// Encodes a successful Bolt response to the request frame `request`, echoing `content`.
/// For the benchmark's echo server and tests.
pub fn encode_response(request: &[u8], status_code: u16, content: &[u8], out: &mut BytesMut) {
    let Some(l) = Bolt::layout(request) else {
        return;
    };
    let start = out.len();
    Bolt::put_reply(request, CMD_RESPONSE, status_code, out);
    if l.crc {
        out.truncate(out.len() - 4);
    }
    if !content.is_empty() {
        // A response's fixed header ends with its content length.
        let fixed = if l.proto == PROTO_V2 { 22 } else { 20 };
        let at = start + fixed - 4;
        out[at..at + 4].copy_from_slice(&(content.len() as u32).to_be_bytes());
        out.put_slice(content);
    }
    if l.crc {
        let c = crc32(&out[start..]);
        out.put_u32(c);
    }
}

#[cfg(test)]
mod tests;
