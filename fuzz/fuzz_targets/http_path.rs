//! The connection manager's path normalisation on untrusted paths, under every combination of
//! normalize_path, merge_slashes and path_with_escaped_slashes_action. Never a panic; a path
//! it forwards starts with `/` and keeps its query; normalising what it produced changes
//! nothing more (a second proxy with the same options sees the same path); with
//! normalize_path on, no `.` or `..` segment reaches the upstream.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice::proxy::http::config::EscapedSlashes;
use sluice::proxy::http::path_normalize::{apply, PathOptions, PathOutcome};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(path) = std::str::from_utf8(rest) else {
        return;
    };
    let o = PathOptions {
        normalize: flags & 1 != 0,
        merge_slashes: flags & 2 != 0,
        escaped_slashes: match (flags >> 2) & 3 {
            0 => EscapedSlashes::KeepUnchanged,
            1 => EscapedSlashes::RejectRequest,
            2 => EscapedSlashes::UnescapeAndRedirect,
            _ => EscapedSlashes::UnescapeAndForward,
        },
    };
    let out = match apply(&o, path) {
        PathOutcome::Unchanged => path.to_string(),
        PathOutcome::Rewritten(p) => p,
        PathOutcome::Reject | PathOutcome::Redirect(_) => return,
    };
    if !path.starts_with('/') {
        assert_eq!(out, path);
        return;
    }
    assert!(out.starts_with('/'), "{path:?} -> {out:?}");
    let query = |p: &str| p.find('?').map(|i| p[i..].to_string());
    assert_eq!(query(&out), query(path), "{path:?} -> {out:?}");
    if o.escaped_slashes != EscapedSlashes::UnescapeAndForward {
        // (Unescaping again could find a `%2F` that the first unescape made, as in `%252F`.)
        let again = match apply(&o, &out) {
            PathOutcome::Unchanged => out.clone(),
            PathOutcome::Rewritten(p) => p,
            other => panic!("{path:?} -> {out:?} -> {other:?}"),
        };
        assert_eq!(again, out, "{path:?}: not idempotent");
    }
    if o.normalize {
        let p = out.split('?').next().unwrap_or("");
        assert!(
            p.split('/').all(|s| s != "." && s != ".."),
            "{path:?} -> {out:?}"
        );
    }
});
