//! Just enough Hessian 2 to read the first field of a serialised object without deserialising
//! the rest: SOFARPC's `SofaRequest` body starts with `methodName`, which routing needs when a
//! client does not copy it into the Bolt header map.
//!
//! Two encodings of the class definition are in use: the final Hessian 2.0 one (`'C'` type, field
//! count, field names, then `'O'`/0x60+ instance) as Java writes it, and the draft one (`'O'`
//! type-length, chars, count, names, then `'o'` instance) that hessian.js writes.

/// Reads the string value of `field` from the object at the start of `body`, if that object's
/// class lists `field` first. Anything unexpected gives `None`, never a panic.
pub fn first_field_string(body: &[u8], field: &str) -> Option<String> {
    let mut r = Reader { b: body, at: 0 };
    match r.byte()? {
        b'C' => {
            let _type = r.string()?;
        }
        b'O' => {
            let n = r.int()?;
            r.chars(usize::try_from(n).ok()?)?;
        }
        _ => return None,
    }
    let count = r.int()?;
    if count < 1 {
        return None;
    }
    if r.string()? != field {
        return None;
    }
    for _ in 1..count {
        r.string()?;
    }
    // The instance: a reference to the definition just read.
    match r.byte()? {
        b'O' | b'o' => {
            r.int()?;
        }
        0x60..=0x6f => {}
        _ => return None,
    }
    r.string()
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let v = *self.b.get(self.at)?;
        self.at += 1;
        Some(v)
    }

    fn int(&mut self) -> Option<i64> {
        let c = self.byte()?;
        Some(match c {
            0x80..=0xbf => i64::from(c) - 0x90,
            0xc0..=0xcf => ((i64::from(c) - 0xc8) << 8) + i64::from(self.byte()?),
            0xd0..=0xd7 => {
                let hi = (i64::from(c) - 0xd4) << 16;
                hi + (i64::from(self.byte()?) << 8) + i64::from(self.byte()?)
            }
            b'I' => {
                let mut v = 0i32;
                for _ in 0..4 {
                    v = (v << 8) | i32::from(self.byte()?);
                }
                i64::from(v)
            }
            _ => return None,
        })
    }

    /// A string whose length counts UTF-16 code units, as Hessian does.
    fn string(&mut self) -> Option<String> {
        let c = self.byte()?;
        let len = match c {
            0x00..=0x1f => usize::from(c),
            0x30..=0x33 => (usize::from(c - 0x30) << 8) + usize::from(self.byte()?),
            b'S' => (usize::from(self.byte()?) << 8) + usize::from(self.byte()?),
            _ => return None, // chunked ('R') and null are not method names
        };
        self.chars(len)
    }

    fn chars(&mut self, units: usize) -> Option<String> {
        let rest = self.b.get(self.at..)?;
        let mut out = String::new();
        let mut seen = 0;
        let mut used = 0;
        let text = match std::str::from_utf8(rest) {
            Ok(t) => t,
            Err(e) => std::str::from_utf8(&rest[..e.valid_up_to()]).ok()?,
        };
        for ch in text.chars() {
            if seen >= units {
                break;
            }
            seen += ch.len_utf16();
            used += ch.len_utf8();
            out.push(ch);
        }
        if seen != units {
            return None;
        }
        self.at += used;
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_draft_encoding_hessian_js_writes() {
        // From the sofa-bolt-node capture: 'O', type length 44, the type, 5 fields, ..., 'o' ref 0.
        let mut body = vec![0x4f, 0xbc];
        body.extend_from_slice(b"com.alipay.sofa.rpc.core.request.SofaRequest");
        body.push(0x92);
        body.push(0x0a);
        body.extend_from_slice(b"methodName");
        body.push(0x0d);
        body.extend_from_slice(b"methodArgSigs");
        body.extend_from_slice(&[0x6f, 0x90, 0x08]);
        body.extend_from_slice(b"sayHello");
        assert_eq!(
            first_field_string(&body, "methodName").as_deref(),
            Some("sayHello")
        );
        assert_eq!(first_field_string(&body, "other"), None);
    }

    #[test]
    fn reads_the_final_encoding_java_writes() {
        let mut body = vec![b'C', 0x04];
        body.extend_from_slice(b"Type");
        body.push(0x91);
        body.push(0x0a);
        body.extend_from_slice(b"methodName");
        body.push(0x60);
        body.extend_from_slice(&[b'S', 0x00, 0x03]);
        body.extend_from_slice("héé".as_bytes());
        assert_eq!(
            first_field_string(&body, "methodName").as_deref(),
            Some("héé")
        );
    }

    #[test]
    fn truncated_or_foreign_bodies_give_none() {
        let mut body = vec![0x4f, 0xbc];
        body.extend_from_slice(b"com.alipay");
        for n in 0..body.len() {
            assert_eq!(first_field_string(&body[..n], "methodName"), None);
        }
        assert_eq!(first_field_string(b"\x4e", "methodName"), None);
    }
}
