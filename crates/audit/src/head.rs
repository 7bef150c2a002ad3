//! A validating single-pass scan of a whole record that keeps only its head: `kind`,
//! `apiVersion`, `verb`, `auditID`, `objectRef.resource`, and whether it has `items`.
//!
//! Without the prefilter every line is parsed. A serde struct visitor pays per key for
//! dispatch and for decoding; this scanner validates the JSON grammar (strings with their
//! escapes and no raw control characters, numbers, literals, nesting up to serde_json's depth
//! of 128, nothing after the value) while jumping through string contents 16 bytes at a time,
//! and decodes only the five strings it keeps. A record it accepts is one serde_json accepts
//! (property-tested against it); anything it keeps that has escapes is decoded by serde_json.

use crate::event::RecordError;
use std::borrow::Cow;

/// The head of an audit record.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Head<'a> {
    /// `kind`.
    pub kind: Option<Cow<'a, str>>,
    /// `apiVersion`.
    pub api_version: Option<Cow<'a, str>>,
    /// `verb`.
    pub verb: Option<Cow<'a, str>>,
    /// `auditID`.
    pub audit_id: Option<Cow<'a, str>>,
    /// `objectRef.resource`.
    pub resource: Option<Cow<'a, str>>,
    /// Whether the record has `items` (an EventList).
    pub is_list: bool,
}

impl Head<'_> {
    /// Whether the record says it is an audit Event (EventLists are checked item by item).
    pub fn check(&self) -> Result<(), RecordError> {
        if self.is_list {
            return Ok(());
        }
        crate::event::check_fields(
            self.kind.as_deref(),
            self.api_version.as_deref(),
            self.verb.is_some() || self.audit_id.is_some(),
        )
    }
}

const MAX_DEPTH: usize = 128;

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

type R<T> = Result<T, String>;

impl<'a> Scanner<'a> {
    fn err<T>(&self, what: &str) -> R<T> {
        Err(format!("{what} at column {}", self.i + 1))
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn expect(&mut self, c: u8) -> R<()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            self.err(&format!("expected `{}`", c as char))
        }
    }

    /// A string starting at `"`; returns its raw contents and whether it had escapes.
    fn string(&mut self) -> R<(&'a [u8], bool)> {
        self.expect(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            self.i = stop(self.b, self.i);
            match self.peek() {
                Some(b'"') => {
                    let raw = &self.b[start..self.i];
                    self.i += 1;
                    return Ok((raw, escaped));
                }
                Some(b'\\') => {}
                Some(_) => return self.err("control character in string"),
                None => return self.err("unterminated string"),
            }
            escaped = true;
            self.i += 1;
            match self.peek() {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                Some(b'u') => {
                    self.i += 1;
                    for _ in 0..4 {
                        match self.peek() {
                            Some(c) if c.is_ascii_hexdigit() => self.i += 1,
                            _ => return self.err("invalid \\u escape"),
                        }
                    }
                }
                _ => return self.err("invalid escape"),
            }
        }
    }

    fn number(&mut self) -> R<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.i += 1;
                }
            }
            _ => return self.err("invalid number"),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return self.err("invalid number");
            }
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.i += 1;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return self.err("invalid number");
            }
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.i += 1;
            }
        }
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> R<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            self.err("invalid literal")
        }
    }

    /// Skips any value, checking it.
    fn value(&mut self, depth: usize) -> R<()> {
        self.ws();
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b'{') => self.object(depth + 1, |s, _, _| s.value(depth + 1)),
            Some(b'[') => {
                if depth + 1 > MAX_DEPTH {
                    return self.err("recursion limit exceeded");
                }
                self.i += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.value(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return self.err("expected `,` or `]`"),
                    }
                }
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => self.err("expected a value"),
            None => self.err("unexpected end"),
        }
    }

    /// An object; `on_value` is called with each key (raw, escaped) and must consume the value.
    fn object(
        &mut self,
        depth: usize,
        mut on_value: impl FnMut(&mut Self, &'a [u8], bool) -> R<()>,
    ) -> R<()> {
        if depth > MAX_DEPTH {
            return self.err("recursion limit exceeded");
        }
        self.expect(b'{')?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return self.err("expected a key");
            }
            let (key, esc) = self.string()?;
            self.ws();
            self.expect(b':')?;
            on_value(self, key, esc)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return self.err("expected `,` or `}`"),
            }
        }
    }

    /// A string value kept in the head (or `null`).
    fn kept(&mut self, name: &str, slot: &mut Option<Cow<'a, str>>, seen: &mut bool) -> R<()> {
        if std::mem::replace(seen, true) {
            return self.err(&format!("duplicate field `{name}`"));
        }
        self.ws();
        match self.peek() {
            Some(b'"') => {
                let (raw, esc) = self.string()?;
                *slot = Some(decode(raw, esc).map_err(|e| format!("{name}: {e}"))?);
                Ok(())
            }
            Some(b'n') => self.literal(b"null"),
            _ => self.err(&format!("invalid type: `{name}` must be a string")),
        }
    }
}

/// The first position at or after `i` holding `"`, `\\` or a control character (which a JSON
/// string may not contain raw), or `b.len()`.
///
/// On x86-64, 16 bytes at a time with SSE2, which every x86-64 processor has: no feature
/// check, and it inlines into the scanner (most strings here are shorter than 32 bytes, so
/// wider vectors would not pay for a call).
#[inline(always)]
fn stop(b: &[u8], mut i: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of the x86-64 baseline; each load reads b[i..i + 16], which
        // the loop condition keeps in bounds.
        unsafe {
            let quote = _mm_set1_epi8(b'"' as i8);
            let backslash = _mm_set1_epi8(b'\\' as i8);
            let ctl = _mm_set1_epi8(0x1f);
            while i + 16 <= b.len() {
                let v = _mm_loadu_si128(b.as_ptr().add(i) as *const __m128i);
                // Unsigned v <= 0x1f is exactly min(v, 0x1f) == v.
                let low = _mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v);
                let hit = _mm_or_si128(
                    _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                    low,
                );
                let mask = _mm_movemask_epi8(hit) as u32;
                if mask != 0 {
                    return i + mask.trailing_zeros() as usize;
                }
                i += 16;
            }
        }
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return i;
        }
        i += 1;
    }
    i
}

/// The text of a string's raw contents.
fn decode(raw: &[u8], escaped: bool) -> R<Cow<'_, str>> {
    if !escaped {
        return std::str::from_utf8(raw)
            .map(Cow::Borrowed)
            .map_err(|e| e.to_string());
    }
    // Rare: let serde_json apply the escapes (surrogate pairs included).
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice::<String>(&quoted)
        .map(Cow::Owned)
        .map_err(|e| e.to_string())
}

fn key_is(raw: &[u8], esc: bool, name: &str) -> bool {
    if esc {
        decode(raw, true).is_ok_and(|k| k == name)
    } else {
        raw == name.as_bytes()
    }
}

/// Validates a whole record and returns its head.
pub fn scan_head(bytes: &[u8]) -> Result<Head<'_>, RecordError> {
    let mut s = Scanner { b: bytes, i: 0 };
    let mut h = Head::default();
    let mut seen = [false; 6];
    s.ws();
    match s.peek() {
        Some(b'{') => {}
        Some(_) => return Err(RecordError::NotAnEvent("not a JSON object".into())),
        None => return Err(RecordError::Json("empty record".into())),
    }
    s.object(1, |s, key, esc| {
        let decoded;
        let key: &[u8] = if esc {
            decoded = decode(key, true).map_err(|e| format!("key: {e}"))?;
            decoded.as_bytes()
        } else {
            key
        };
        match key {
            b"kind" => s.kept("kind", &mut h.kind, &mut seen[0]),
            b"apiVersion" => s.kept("apiVersion", &mut h.api_version, &mut seen[1]),
            b"verb" => s.kept("verb", &mut h.verb, &mut seen[2]),
            b"auditID" => s.kept("auditID", &mut h.audit_id, &mut seen[3]),
            b"items" => {
                if std::mem::replace(&mut seen[4], true) {
                    return s.err("duplicate field `items`");
                }
                s.ws();
                h.is_list = s.peek() != Some(b'n');
                s.value(1)
            }
            b"objectRef" => {
                if std::mem::replace(&mut seen[5], true) {
                    return s.err("duplicate field `objectRef`");
                }
                s.ws();
                match s.peek() {
                    Some(b'{') => {
                        let mut seen_res = false;
                        let mut res = None;
                        s.object(2, |s, key, esc| {
                            if key_is(key, esc, "resource") {
                                s.kept("objectRef.resource", &mut res, &mut seen_res)
                            } else {
                                s.value(2)
                            }
                        })?;
                        h.resource = res;
                        Ok(())
                    }
                    Some(b'n') => s.literal(b"null"),
                    _ => s.err("invalid type: `objectRef` must be an object"),
                }
            }
            _ => s.value(1),
        }
    })
    .map_err(RecordError::Json)?;
    s.ws();
    if s.i != bytes.len() {
        return Err(RecordError::Json(format!(
            "trailing characters at column {}",
            s.i + 1
        )));
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_finds_the_first_special_byte() {
        let scalar = |b: &[u8], i: usize| {
            (i..b.len())
                .find(|&k| b[k] == b'"' || b[k] == b'\\' || b[k] < 0x20)
                .unwrap_or(b.len())
        };
        for len in 0..70 {
            for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                for at in 0..=len {
                    let mut b = vec![b'a'; len];
                    b.extend_from_slice(&[0x20, 0x7f, 0xff]);
                    if at < len {
                        b[at] = special;
                    }
                    for from in [0, 1, 15, 16, 17].into_iter().filter(|&f| f <= b.len()) {
                        assert_eq!(
                            stop(&b, from),
                            scalar(&b, from),
                            "len {len} at {at} from {from}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn keeps_the_head() {
        let h = scan_head(br#" {"kind":"Event","apiVersion":"audit.k8s.io/v1","verb":"cr\u0065ate","user":{"groups":["a",{"x":[1,-2.5e+3,true,null]}]},"objectRef":{"apiGroup":"rbac","resource":"clusterroles"},"auditID":null} "#).unwrap();
        assert_eq!(h.kind.as_deref(), Some("Event"));
        assert_eq!(h.verb.as_deref(), Some("create"));
        assert_eq!(h.resource.as_deref(), Some("clusterroles"));
        assert_eq!(h.audit_id, None);
        assert!(!h.is_list);
        assert!(scan_head(br#"{"items":[{"verb":"get"}]}"#).unwrap().is_list);
    }

    #[test]
    fn rejects_what_serde_rejects() {
        for bad in [
            &br#"{"kind": 0}"#[..],
            br#"{"kind":"a","kind":"b"}"#,
            br#"{"a":01}"#,
            br#"{"a":1.}"#,
            br#"{"a":-}"#,
            br#"{"a":"\x"}"#,
            br#"{"a":"\u12g4"}"#,
            b"{\"a\":\"\x01\"}",
            br#"{"a":tru}"#,
            br#"{"a":1,}"#,
            br#"{"a":1} x"#,
            br#"{"a" 1}"#,
            br#"{"a":[1,]}"#,
            br#"{"a":"#,
            br#"[1]"#,
            b"",
        ] {
            assert!(scan_head(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        assert!(scan_head(deep.as_bytes()).is_err());
        let ok = format!("{{\"a\":{}1{}}}", "[".repeat(100), "]".repeat(100));
        assert!(scan_head(ok.as_bytes()).is_ok());
    }
}
