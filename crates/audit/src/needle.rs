//! Finding a needle while counting the lines skipped on the way.
//!
//! The default scan needs two things from the bytes between two candidate lines: where the next
//! needle is, and how many newlines lie before it (for line numbers). Doing them as two passes
//! (`memmem`, then a newline count) reads every byte twice; on a warm page cache that second
//! pass is what separates kubeward from a plain `rg -c`. On x86-64 with AVX2 both are done in
//! one pass: each 64-byte block is loaded once, compared with `\n` (popcount) and with two of
//! the needle's bytes, its first and one chosen by [`LineNeedle::with_second_byte`]
//! (candidate positions, then verified). Elsewhere the two-pass
//! version runs; both give identical answers (property-tested).

use memchr::memmem::Finder;

/// A needle to find in lines.
#[derive(Clone, Debug)]
pub struct LineNeedle {
    needle: Vec<u8>,
    /// The index of the needle byte compared with the first one in the fused scan.
    second: usize,
    finder: Finder<'static>,
    /// Also stop at every line that does not start like a native audit Event
    /// ([`looks_native`]); see [`LineNeedle::with_line_guard`].
    guard: bool,
    #[cfg(target_arch = "x86_64")]
    avx2: bool,
}

impl LineNeedle {
    /// A needle; it must not contain a newline.
    pub fn new(needle: &[u8]) -> Self {
        debug_assert!(!needle.contains(&b'\n'));
        LineNeedle {
            needle: needle.to_vec(),
            second: 1,
            finder: Finder::new(needle).into_owned(),
            guard: false,
            #[cfg(target_arch = "x86_64")]
            avx2: needle.len() >= 2
                && std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("popcnt"),
        }
    }

    /// Which needle byte the fused scan pairs with the first one to find candidates (default
    /// 1: the first two). Each candidate costs a compare of the whole needle, so the pair
    /// should be rare in the input: in audit logs `ro` occurs about three times a line
    /// (`groups`, `controller`), while `r` and `l` two apart (for `role`) occur about once.
    /// An index outside the needle keeps the default.
    pub fn with_second_byte(mut self, index: usize) -> Self {
        if index >= 1 && index < self.needle.len() {
            self.second = index;
        }
        self
    }

    /// With `on`, [`LineNeedle::next`] also stops at the start of every line that does not
    /// begin like a native audit Event ([`looks_native`]), needle or not. Under
    /// `--input-format auto` a native log may hold managed-cluster wrappers further down (a
    /// GKE entry, a gzip+base64 CloudWatch payload) that the needle cannot see; such lines
    /// must reach the unwrapper. Only the first bytes after each newline are compared, and
    /// only in blocks that hold a newline, so the native scan keeps its speed.
    pub fn with_line_guard(mut self, on: bool) -> Self {
        self.guard = on;
        self
    }

    /// Whether `line` holds the needle.
    pub fn contains(&self, line: &[u8]) -> bool {
        self.finder.find(line).is_some()
    }

    /// The first occurrence at or after `pos`, and the number of newlines in `hay[pos..hit]`
    /// (to the end of `hay` when there is none). With the line guard on, the start of a line
    /// that does not look native counts as an occurrence too (the line at `pos` included
    /// when `pos` starts a line).
    pub fn next(&self, hay: &[u8], pos: usize) -> (Option<usize>, u64) {
        if self.guard
            && pos < hay.len()
            && (pos == 0 || hay[pos - 1] == b'\n')
            && !looks_native(&hay[pos..])
        {
            return (Some(pos), 0);
        }
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: AVX2 and POPCNT support were checked at construction.
            return unsafe { self.next_avx2(hay, pos) };
        }
        self.next_portable(hay, pos)
    }

    /// The two-pass version: `memmem`, then a newline count.
    pub fn next_portable(&self, hay: &[u8], pos: usize) -> (Option<usize>, u64) {
        let pos = pos.min(hay.len());
        let hit = self.finder.find(&hay[pos..]).map(|h| h + pos);
        let end = hit.unwrap_or(hay.len());
        if self.guard {
            // The first line start in (pos, end] that does not look native comes first.
            for (k, nl) in memchr::memchr_iter(b'\n', &hay[pos..end]).enumerate() {
                let q = pos + nl + 1;
                if q < hay.len() && !looks_native(&hay[q..]) {
                    return (Some(q), k as u64 + 1);
                }
            }
        }
        (
            hit,
            memchr::memchr_iter(b'\n', &hay[pos..end]).count() as u64,
        )
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,popcnt")]
    unsafe fn next_avx2(&self, hay: &[u8], pos: usize) -> (Option<usize>, u64) {
        use std::arch::x86_64::*;
        let n = &self.needle;
        let first = _mm256_set1_epi8(n[0] as i8);
        let k = self.second;
        let second = _mm256_set1_epi8(n[k] as i8);
        let newline = _mm256_set1_epi8(b'\n' as i8);
        let mut o = pos.min(hay.len());
        let mut lines = 0u64;
        let ptr = hay.as_ptr();
        // 64 bytes a round; every load (the last one at o + 32 + k .. o + 64 + k) stays inside
        // `hay`.
        while o + 64 + k <= hay.len() {
            // SAFETY: o + 64 + k <= hay.len() bounds all four unaligned 32-byte loads.
            let a0 = _mm256_loadu_si256(ptr.add(o) as *const __m256i);
            let b0 = _mm256_loadu_si256(ptr.add(o + k) as *const __m256i);
            let a1 = _mm256_loadu_si256(ptr.add(o + 32) as *const __m256i);
            let b1 = _mm256_loadu_si256(ptr.add(o + 32 + k) as *const __m256i);
            let c0 = _mm256_and_si256(_mm256_cmpeq_epi8(a0, first), _mm256_cmpeq_epi8(b0, second));
            let c1 = _mm256_and_si256(_mm256_cmpeq_epi8(a1, first), _mm256_cmpeq_epi8(b1, second));
            let nl = (_mm256_movemask_epi8(_mm256_cmpeq_epi8(a0, newline)) as u32 as u64)
                | ((_mm256_movemask_epi8(_mm256_cmpeq_epi8(a1, newline)) as u32 as u64) << 32);
            // Everything is reduced to scalar masks before the guard's branches and calls, so
            // no vector register has to live across them (spilled to the stack, they cost the
            // loop more than the guard itself).
            let mut cand = (_mm256_movemask_epi8(c0) as u32 as u64)
                | ((_mm256_movemask_epi8(c1) as u32 as u64) << 32);
            // With the guard, the first newline whose next line does not look native: a
            // needle after it in this block comes second. Blocks without newlines (most of
            // them; lines are long) pay one branch.
            let mut odd = 64u32;
            if self.guard && nl != 0 {
                let mut m = nl;
                while m != 0 {
                    let bit = m.trailing_zeros();
                    if !api_server_prefix(hay, o + bit as usize + 1) {
                        // Rare: only this path calls out, so the loop keeps its registers.
                        odd = first_odd_line(hay, o, m);
                        break;
                    }
                    m &= m - 1;
                }
            }
            while cand != 0 {
                let bit = cand.trailing_zeros();
                if bit > odd {
                    break;
                }
                let p = o + bit as usize;
                if hay[p..].starts_with(n) {
                    let below = nl & ((1u64 << bit) - 1);
                    return (Some(p), lines + u64::from(below.count_ones()));
                }
                cand &= cand - 1;
            }
            if odd < 64 {
                let upto = nl & (u64::MAX >> (63 - odd));
                return (
                    Some(o + odd as usize + 1),
                    lines + u64::from(upto.count_ones()),
                );
            }
            lines += u64::from(nl.count_ones());
            o += 64;
        }
        let (hit, rest) = self.next_portable(hay, o);
        (hit, lines + rest)
    }
}

/// The first newline bit of `m` (newlines of the block at `o`) whose next line does not look
/// native, or 64. Out of line and cold: the scan loop calls it only when a line start is not
/// the API server's own prefix.
#[cold]
#[inline(never)]
fn first_odd_line(hay: &[u8], o: usize, mut m: u64) -> u32 {
    while m != 0 {
        let bit = m.trailing_zeros();
        let q = o + bit as usize + 1;
        if q < hay.len() && !looks_native(&hay[q..]) {
            return bit;
        }
        m &= m - 1;
    }
    64
}

/// Whether `hay[q..]` starts with `{"kind":"Event"`, the API server's own prefix: two 8-byte
/// compares, inlined into the scan loop, which asks this at every line start under the guard
/// (a call and a byte-wise compare there cost the native scan about 30%).
#[inline(always)]
fn api_server_prefix(hay: &[u8], q: usize) -> bool {
    const HEAD: u64 = u64::from_le_bytes(*br#"{"kind":"#);
    const TAIL: u64 = u64::from_le_bytes(*br#":"Event""#);
    let Some(s) = hay.get(q..q + 15) else {
        return false;
    };
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(b)
    };
    word(0) == HEAD && word(7) == TAIL
}

/// Whether a line starts the way audit Events are written: `{"kind":"Event"` or
/// `{"apiVersion":"audit.k8s.io/` (the API server's order), blanks allowed around the
/// punctuation (as other JSON writers put them). A blank line counts as native. Only the first
/// few dozen bytes are looked at: this is the line guard's O(1) test, not a judgement on the
/// JSON.
pub fn looks_native(line: &[u8]) -> bool {
    // The API server's own prefix first: one fixed-size compare for nearly every line.
    if line.starts_with(br#"{"kind":"Event""#) {
        return true;
    }
    fn ws(b: &[u8]) -> &[u8] {
        let n = b
            .iter()
            .take_while(|&&c| c == b' ' || c == b'\t' || c == b'\r')
            .count();
        &b[n..]
    }
    let rest = ws(line);
    if matches!(rest.first(), None | Some(b'\n')) {
        return true;
    }
    let Some(rest) = rest.strip_prefix(b"{") else {
        return false;
    };
    let rest = ws(rest);
    for (key, value) in [
        (&br#""kind""#[..], &br#""Event""#[..]),
        (br#""apiVersion""#, br#""audit.k8s.io/"#),
    ] {
        if let Some(r) = rest.strip_prefix(key) {
            return ws(r)
                .strip_prefix(b":")
                .is_some_and(|r| ws(r).starts_with(value));
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_equals_two_pass() {
        let n = LineNeedle::new(b"clusterroles");
        let mut hay = Vec::new();
        for i in 0..3000 {
            match i % 7 {
                0 => hay.extend_from_slice(b"{\"resource\":\"clusterroles\"}\n"),
                1 => hay.extend_from_slice(b"cl\nclusterrole\nc"),
                2 => hay.extend_from_slice(b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxclusterroles"),
                _ => hay.extend_from_slice(&vec![b'a' + (i % 26) as u8; i % 41]),
            }
            if i % 3 == 0 {
                hay.push(b'\n');
            }
        }
        for start in 0..200 {
            let mut pos = start;
            loop {
                let a = n.next(&hay, pos);
                let b = n.next_portable(&hay, pos);
                assert_eq!(a, b, "from {pos}");
                match a.0 {
                    Some(h) => pos = h + 1,
                    None => break,
                }
            }
        }
        assert_eq!(n.next(b"", 0), (None, 0));
        assert_eq!(n.next(b"\n\nclusterroles", 1), (Some(2), 1));
    }

    /// Any choice of the second byte finds the same needles as the two-pass scan, near
    /// block ends and the end of the input included.
    #[test]
    fn fused_equals_two_pass_with_any_second_byte() {
        let mut hay = Vec::new();
        for i in 0..2000 {
            match i % 6 {
                0 => hay.extend_from_slice(b"{\"resource\":\"rolebindings\"}\n"),
                1 => hay.extend_from_slice(b"kube-controller-manager\nrol\nr l\nro"),
                2 => hay.extend_from_slice(b"roxxrolxrxle"),
                _ => hay.extend_from_slice(&vec![b'a' + (i % 26) as u8; i % 67]),
            }
        }
        hay.extend_from_slice(b"\nrole");
        for k in 0..6 {
            let n = LineNeedle::new(b"role").with_second_byte(k);
            let mut found = 0;
            for start in [0usize, 1, 17, 63, 64, 65] {
                let mut pos = start;
                loop {
                    let a = n.next(&hay, pos);
                    assert_eq!(a, n.next_portable(&hay, pos), "second byte {k}, from {pos}");
                    match a.0 {
                        Some(h) => {
                            found += 1;
                            pos = h + 1
                        }
                        None => break,
                    }
                }
            }
            assert!(found > 2000, "second byte {k}: {found}");
        }
    }

    /// With the line guard, the fused and two-pass scans agree, and both stop at the first
    /// line that does not look native as well as at the needle.
    #[test]
    fn guarded_fused_equals_two_pass() {
        let n = LineNeedle::new(b"clusterroles").with_line_guard(true);
        let mut hay = Vec::new();
        for i in 0..3000 {
            match i % 11 {
                0 => hay.extend_from_slice(b"{\"kind\":\"Event\",\"resource\":\"clusterroles\"}\n"),
                1 => hay.extend_from_slice(b"{\"kind\":\"Event\",\"x\":1}\n"),
                2 => hay.extend_from_slice(b"{\"apiVersion\":\"audit.k8s.io/v1\"}\n"),
                3 => hay.extend_from_slice(b"{\"protoPayload\":{}}\n"),
                4 => hay.extend_from_slice(b"  \n"),
                5 => hay.extend_from_slice(b"{\"kind\":\"Event\",\"pad\":\""),
                6 => hay.extend_from_slice(&vec![b'a' + (i % 26) as u8; i % 70]),
                7 => hay.extend_from_slice(b"\"}\n{\"kind\":\"Event\"clusterroles"),
                _ => hay.extend_from_slice(b"{\"kind\":\"Event\"}\n"),
            }
        }
        let mut odd = 0;
        for start in 0..200 {
            let mut pos = start;
            loop {
                let a = n.next(&hay, pos);
                let b = n.next_portable(&hay, pos);
                // next() also checks the line at `pos`; next_portable only those after it.
                if !(pos == 0 || hay[pos - 1] == b'\n') || looks_native(&hay[pos..]) {
                    assert_eq!(a, b, "from {pos}");
                }
                match a.0 {
                    Some(h) => {
                        if !hay[h..].starts_with(b"clusterroles") {
                            assert!(!looks_native(&hay[h..]) && (h == 0 || hay[h - 1] == b'\n'));
                            odd += 1;
                        }
                        pos = h + 1
                    }
                    None => break,
                }
            }
        }
        assert!(odd > 0);
        let g = |s: &[u8]| n.next(s, 0);
        assert_eq!(g(b"{\"kind\":\"Event\"}\n{\"awslogs\":1}"), (Some(17), 1));
        assert_eq!(g(b"{\"awslogs\":1}"), (Some(0), 0));
        assert_eq!(g(b"\n \t\n{\"kind\":\"Event\"}\n"), (None, 3));
        assert!(looks_native(b"{ \"kind\" : \"Event\", \"x\": 1}"));
        assert!(looks_native(b"{\"apiVersion\": \"audit.k8s.io/v1\"}"));
        assert!(!looks_native(b"{\"kind\":\"EventList\"}"));
        assert!(!looks_native(b"{\"kind\":\"Evt"));
        assert!(!looks_native(b"{\"awslogs\":{}}"));
    }
}
