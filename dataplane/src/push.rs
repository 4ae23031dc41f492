//! The config-push channel between the control process and a dataplane: a Unix stream socket
//! carrying length-prefixed JSON messages (a 4-byte big-endian length, then the message).
//!
//! On connect the dataplane says `{"hello": {"version": V|null, "config_version": N}}`: the
//! resources version it last applied from a push (so a control process that restarts can tell
//! what the dataplane serves and resync), and its internal config version. The control process
//! sends `{"push": {"version": V, "static_resources": {...Envoy v3 listeners and clusters...}}}`
//! (or the resources as JSON text in a string);
//! the dataplane lays the resources over its bootstrap file, validates and applies them with
//! the same operation as a reload, and answers `{"applied": {"version": V, "config_version": N}}`
//! or `{"rejected": {"version": V, "error": "..."}}` (the previous config keeps serving).
//! A dataplane whose control process goes away keeps serving its last config.

use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Large enough for tens of thousands of clusters with their endpoints.
pub const MAX_MESSAGE: usize = 256 << 20;

/// Reads one message; `None` at a clean end of stream.
pub async fn read_message<R: AsyncRead + Unpin>(
    r: &mut R,
) -> io::Result<Option<serde_json::Value>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = body_len(len).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    parse_body(&body)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn body_len(header: [u8; 4]) -> Result<usize, String> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_MESSAGE {
        return Err(format!(
            "a {len}-byte message is over the {MAX_MESSAGE}-byte limit"
        ));
    }
    Ok(len)
}

fn parse_body(body: &[u8]) -> Result<serde_json::Value, String> {
    serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))
}

/// Decodes one message from the front of `buf`: the message and the bytes it took, `None` if
/// more bytes are needed, or what is wrong with it. (The stream reader does the same reading
/// as it goes; this is its form for buffers, and for the fuzz target.)
pub fn decode(buf: &[u8]) -> Result<Option<(serde_json::Value, usize)>, String> {
    let Some(header) = buf.get(..4) else {
        return Ok(None);
    };
    let len = body_len(header.try_into().expect("4 bytes"))?;
    let Some(body) = buf.get(4..4 + len) else {
        return Ok(None);
    };
    Ok(Some((parse_body(body)?, 4 + len)))
}

pub async fn write_message<W: AsyncWrite + Unpin>(
    w: &mut W,
    message: &serde_json::Value,
) -> io::Result<()> {
    let body = serde_json::to_vec(message)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|n| (*n as usize) <= MAX_MESSAGE)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "message too large"))?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(&body).await?;
    w.flush().await
}

/// A push, as the dataplane reads it. The resources are kept as compact JSON text: a reload
/// lays them over the file again, and tens of thousands of clusters as a `serde_json::Value`
/// would take several times the memory of everything built from them.
pub struct Push {
    pub version: String,
    pub static_resources: std::sync::Arc<str>,
}

/// Reads a `push` message; the error says what is wrong with it.
pub fn parse_push(message: &serde_json::Value) -> Result<Push, String> {
    let push = message
        .get("push")
        .ok_or("expected a {\"push\": ...} message")?;
    let version = push
        .get("version")
        .and_then(|v| v.as_str())
        .ok_or("push.version: required, a string")?
        .to_string();
    // An object, or the same as JSON text in a string (what sluice-control sends: the dataplane
    // then never holds the whole set as a tree more than once).
    let static_resources: std::sync::Arc<str> = match push.get("static_resources") {
        Some(r) if r.is_object() => r.to_string().into(),
        Some(serde_json::Value::String(text))
            if serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v.is_object()) =>
        {
            text.as_str().into()
        }
        _ => return Err("push.static_resources: required, an object".into()),
    };
    Ok(Push {
        version,
        static_resources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn messages_round_trip_and_oversized_or_broken_ones_are_errors() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let m = json!({"push": {"version": "v1", "static_resources": {"listeners": []}}});
        write_message(&mut a, &m).await.unwrap();
        assert_eq!(read_message(&mut b).await.unwrap(), Some(m));
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let e = read_message(&mut b).await.unwrap_err();
        assert!(e.to_string().contains("over the"), "{e}");
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[0, 0, 0, 3, b'{', b'x', b'}']).await.unwrap();
        assert!(read_message(&mut b)
            .await
            .unwrap_err()
            .to_string()
            .starts_with("not JSON"));
        drop(a);
        assert_eq!(read_message(&mut b).await.unwrap(), None);
    }

    #[test]
    fn decode_reads_a_buffer_as_the_stream_reader_does() {
        let body = br#"{"push":{"version":"1","static_resources":{}}}"#;
        let mut buf = (body.len() as u32).to_be_bytes().to_vec();
        buf.extend_from_slice(body);
        for cut in 0..buf.len() {
            assert_eq!(decode(&buf[..cut]), Ok(None), "{cut} bytes");
        }
        let (m, used) = decode(&buf).unwrap().unwrap();
        assert_eq!(
            (m["push"]["version"].as_str(), used),
            (Some("1"), buf.len())
        );
        assert!(decode(&u32::MAX.to_be_bytes())
            .unwrap_err()
            .contains("over the"));
    }

    #[test]
    fn a_push_needs_a_version_and_resources() {
        assert!(parse_push(&json!({"hello": {}})).is_err());
        let e = parse_push(&json!({"push": {"static_resources": {}}}))
            .err()
            .unwrap();
        assert_eq!(e, "push.version: required, a string");
        let e = parse_push(&json!({"push": {"version": "1"}}))
            .err()
            .unwrap();
        assert_eq!(e, "push.static_resources: required, an object");
        let p = parse_push(&json!({"push": {"version": "1", "static_resources": {}}})).unwrap();
        assert_eq!(p.version, "1");
    }
}
