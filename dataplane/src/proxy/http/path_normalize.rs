//! The connection manager's path normalisation, before any filter or route sees the path:
//! `normalize_path` (RFC 3986 as Envoy does it with Chromium's canonicaliser), `merge_slashes`
//! and `path_with_escaped_slashes_action`. What the upstream receives is the normalised path.
//! Security depends on every hop agreeing on what a path names, so the behaviour here was taken
//! from Envoy 1.40 answering the same requests (tests/tests/http_request_edits.rs compares the two):
//!
//! - normalising decodes percent-escapes of unreserved characters (`%41` → `A`, `%2e` → `.`),
//!   keeps other escapes as written, escapes `"` `<` `>` `` ` `` `{` `}` `|` `^`, turns `\`
//!   into `/` and removes `.` and `..` segments (never above the root); `//` stays;
//! - merging collapses runs of `/`;
//! - escaped slashes (`%2F`, `%5C`, either case) are kept, refused (400), or unescaped and
//!   then either forwarded (normalised and merged again, as configured) or redirected to (307);
//! - the query is never touched;
//! - a path with a fragment (`#`) is refused whatever the options, as Envoy does.

use super::config::EscapedSlashes;

/// What to do with a request, given its path.
#[derive(Debug, PartialEq, Eq)]
pub enum PathOutcome {
    /// Forward it with its path as it came.
    Unchanged,
    /// Forward it with this path.
    Rewritten(String),
    /// Refuse it: 400.
    Reject,
    /// Answer 307 with this location (the unescaped path).
    Redirect(String),
}

/// The three options, as the connection manager holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathOptions {
    pub normalize: bool,
    pub merge_slashes: bool,
    pub escaped_slashes: EscapedSlashes,
}

impl PathOptions {
    /// Whether any option can change a path (the common case is none: nothing to scan).
    pub fn is_active(&self) -> bool {
        self.normalize
            || self.merge_slashes
            || self.escaped_slashes != EscapedSlashes::KeepUnchanged
    }
}

/// Applies the options to a request's path (with its query, as in `:path`).
pub fn apply(o: &PathOptions, full: &str) -> PathOutcome {
    if memchr::memchr(b'#', full.as_bytes()).is_some() {
        // A fragment is the client's alone (RFC 9110 §4.2.4); Envoy refuses a path with one
        // rather than guess what the upstream would make of it.
        return PathOutcome::Reject;
    }
    if !o.is_active() || !full.starts_with('/') {
        // `*` (OPTIONS) and the like have no segments to normalise.
        return PathOutcome::Unchanged;
    }
    let (path, query) = match full.find('?') {
        Some(i) => full.split_at(i),
        None => (full, ""),
    };
    let mut p = path.to_string();
    if o.normalize {
        p = canonical(&p);
    }
    if o.merge_slashes {
        p = merge_slashes(&p);
    }
    match o.escaped_slashes {
        EscapedSlashes::KeepUnchanged => {}
        EscapedSlashes::RejectRequest => {
            if has_escaped_slash(&p) {
                return PathOutcome::Reject;
            }
        }
        EscapedSlashes::UnescapeAndRedirect => {
            if has_escaped_slash(&p) {
                return PathOutcome::Redirect(format!("{}{query}", unescape_slashes(&p)));
            }
        }
        EscapedSlashes::UnescapeAndForward => {
            if has_escaped_slash(&p) {
                // Unescaping can make new `..` segments and `//`: treat them as configured.
                p = unescape_slashes(&p);
                if o.normalize {
                    p = canonical(&p);
                }
                if o.merge_slashes {
                    p = merge_slashes(&p);
                }
            }
        }
    }
    if p == path {
        PathOutcome::Unchanged
    } else {
        PathOutcome::Rewritten(format!("{p}{query}"))
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Characters the canonical form escapes (the rest of what a request line may carry passes).
fn must_escape(b: u8) -> bool {
    matches!(
        b,
        b'"' | b'<' | b'>' | b'`' | b'{' | b'}' | b'|' | b'^' | b' '
    ) || !(0x20..0x7f).contains(&b)
}

/// RFC 3986 normalisation of a path without its query: escapes first, then dot segments.
fn canonical(path: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = path.as_bytes();
    let mut flat = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) if is_unreserved(h << 4 | l) => {
                    let d = h << 4 | l;
                    flat.push(d);
                    i += 3;
                    if d.is_ascii_hexdigit() {
                        escape_nested_percent(&mut flat, bytes.get(i).copied());
                    }
                    continue;
                }
                _ => flat.push(b'%'),
            },
            b'\\' => flat.push(b'/'),
            b if must_escape(b) => {
                flat.extend_from_slice(&[
                    b'%',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ]);
            }
            b => flat.push(b),
        }
        i += 1;
    }
    remove_dot_segments(&flat)
}

/// A decoded hex digit can complete an escape with a lone `%` before it (`%4%42` → `%4B`),
/// which the next hop would decode again: that `%` is escaped itself (`%254B`), so that
/// normalising twice changes nothing more, as Chromium's canonicaliser (and so Envoy) does.
fn escape_nested_percent(flat: &mut Vec<u8>, next: Option<u8>) {
    let n = flat.len();
    let at = if n >= 3 && flat[n - 3] == b'%' && flat[n - 2].is_ascii_hexdigit() {
        n - 3
    } else if n >= 2 && flat[n - 2] == b'%' && next.is_some_and(|b| b.is_ascii_hexdigit()) {
        n - 2
    } else {
        return;
    };
    flat.splice(at + 1..at + 1, *b"25");
}

/// RFC 3986 §5.2.4 over `/`-separated segments of an absolute path; a path that ends in a
/// dot segment ends in `/`.
fn remove_dot_segments(path: &[u8]) -> String {
    let mut out: Vec<&[u8]> = Vec::new();
    let mut trailing = false;
    // The path starts with '/', so the first piece is empty.
    for seg in path.split(|&b| b == b'/').skip(1) {
        trailing = false;
        match seg {
            b"." => trailing = true,
            b".." => {
                out.pop();
                trailing = true;
            }
            s => out.push(s),
        }
    }
    let mut s = Vec::with_capacity(path.len());
    for seg in &out {
        s.push(b'/');
        s.extend_from_slice(seg);
    }
    if trailing || s.is_empty() {
        s.push(b'/');
    }
    // Only ASCII went in (everything else was escaped), so this cannot fail.
    String::from_utf8(s).unwrap_or_default()
}

fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c == '/' && out.ends_with('/') {
            continue;
        }
        out.push(c);
    }
    out
}

fn escaped_slash_at(b: &[u8], i: usize) -> Option<char> {
    if b.get(i) != Some(&b'%') {
        return None;
    }
    match (b.get(i + 1), b.get(i + 2).map(u8::to_ascii_uppercase)) {
        (Some(b'2'), Some(b'F')) => Some('/'),
        (Some(b'5'), Some(b'C')) => Some('\\'),
        _ => None,
    }
}

fn has_escaped_slash(path: &str) -> bool {
    let b = path.as_bytes();
    (0..b.len()).any(|i| escaped_slash_at(b, i).is_some())
}

fn unescape_slashes(path: &str) -> String {
    let b = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < b.len() {
        if let Some(c) = escaped_slash_at(b, i) {
            out.push(c);
            i += 3;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(normalize: bool, merge: bool, esc: EscapedSlashes, path: &str) -> PathOutcome {
        apply(
            &PathOptions {
                normalize,
                merge_slashes: merge,
                escaped_slashes: esc,
            },
            path,
        )
    }

    fn norm(path: &str) -> String {
        match run(true, false, EscapedSlashes::KeepUnchanged, path) {
            PathOutcome::Unchanged => path.to_string(),
            PathOutcome::Rewritten(p) => p,
            o => panic!("{path}: {o:?}"),
        }
    }

    /// Each pair as Envoy 1.40 forwarded it with normalize_path on.
    #[test]
    fn normalises_as_envoy_does() {
        for (from, to) in [
            ("/a/b/../c", "/a/c"),
            ("/a/./b", "/a/b"),
            ("/a//b", "/a//b"),
            ("/a/%2e%2e/b", "/b"),
            ("/a/.%2e/b", "/b"),
            ("/%61bc", "/abc"),
            ("/A/%4a", "/A/J"),
            ("/a%2Fb", "/a%2Fb"),
            ("/a\\b", "/a/b"),
            ("/../x", "/x"),
            ("/a/b/..", "/a/"),
            ("/a/%2E%2e", "/"),
            ("/..", "/"),
            ("/.", "/"),
            ("/a/...", "/a/..."),
            ("/a/..b", "/a/..b"),
            ("/a?x=/../y", "/a?x=/../y"),
            ("/a/%zz", "/a/%zz"),
            ("/a/%", "/a/%"),
            ("/a/%3a", "/a/%3a"),
            ("/a/%c3%a9", "/a/%c3%a9"),
            ("/a|b", "/a%7Cb"),
            ("/a{b}", "/a%7Bb%7D"),
            ("/a\"b<c>`^", "/a%22b%3Cc%3E%60%5E"),
            (
                "/a$b&c(d)*e+f,g;h=i:j@k[l]'!",
                "/a$b&c(d)*e+f,g;h=i:j@k[l]'!",
            ),
            ("/a/..%2fb", "/a/..%2fb"),
            ("/a/b/", "/a/b/"),
            ("/a/%4%42", "/a/%254B"),
            ("/a/%%32e", "/a/%252e"),
            ("/a/%2%65", "/a/%252e"),
        ] {
            assert_eq!(norm(from), to, "{from}");
        }
    }

    #[test]
    fn merges_and_handles_escaped_slashes_as_envoy_does() {
        use EscapedSlashes::*;
        let rw = |p: &str| PathOutcome::Rewritten(p.to_string());
        assert_eq!(
            run(false, true, KeepUnchanged, "/a///b/?q=//x"),
            rw("/a/b/?q=//x")
        );
        assert_eq!(
            run(false, false, RejectRequest, "/a%2fb"),
            PathOutcome::Reject
        );
        assert_eq!(
            run(false, false, RejectRequest, "/a/b"),
            PathOutcome::Unchanged
        );
        assert_eq!(
            run(false, false, UnescapeAndRedirect, "/a%5Cb?x"),
            PathOutcome::Redirect("/a\\b?x".into())
        );
        assert_eq!(
            run(false, false, UnescapeAndForward, "/a/..%2fb"),
            rw("/a/../b")
        );
        assert_eq!(run(true, false, UnescapeAndForward, "/a/..%2fb"), rw("/b"));
        assert_eq!(
            run(true, false, UnescapeAndForward, "/x/%5C..%5C..%5Cetc"),
            rw("/etc")
        );
        assert_eq!(
            run(true, false, UnescapeAndForward, "/a/%2F%2F/b"),
            rw("/a////b")
        );
        assert_eq!(
            run(true, true, UnescapeAndForward, "/a/%2F%2F/b"),
            rw("/a/b")
        );
        assert_eq!(
            run(false, false, KeepUnchanged, "/a/../b"),
            PathOutcome::Unchanged
        );
        assert_eq!(run(true, true, KeepUnchanged, "*"), PathOutcome::Unchanged);
        assert_eq!(
            run(false, false, KeepUnchanged, "/a#b"),
            PathOutcome::Reject
        );
    }
}
