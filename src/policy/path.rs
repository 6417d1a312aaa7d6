//! The one reading of a request path that every rule is matched against.
//!
//! A path rule is only as good as the agreement between the proxy and the application on what
//! the path *is*. `/public/..%2fadmin` is a public path to a matcher that splits on raw `/` and a
//! request for `/admin` to an application that decodes first; `/public/..;/admin` is `/admin` to
//! Tomcat; `/public/%ef%bc%8e%ef%bc%8e/admin` is `/admin` after Unicode normalisation. Rather
//! than imitate every such reading, [`normalise`] accepts only paths on which all of them agree
//! and refuses the rest with a [`PathError`], which the caller answers with 400.
//!
//! What is accepted is percent-decoded exactly once, so `/%61dmin` and `/admin` meet the same
//! rule. The upstream still receives the bytes the client sent: the [`NormalPath`] exists only
//! to choose a rule.

use std::fmt;

/// A request path proven unambiguous and percent-decoded, used only for matching rules (the
/// upstream still receives the original bytes).
///
/// Invariant: starts with `/`, has no empty segment (only the last one may be empty, as in
/// `/a/`), no segment made only of dots, and is valid UTF-8 free of the characters
/// [`normalise`] refuses. Only [`normalise`] makes one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NormalPath(String);

impl NormalPath {
    /// The decoded path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NormalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a path was refused. The text is short on purpose: it goes into a 400 response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is empty or does not begin with `/` (asterisk-form, authority-form, or a
    /// relative reference).
    #[error("path does not start with '/'")]
    NotAbsolute,
    /// A raw control character, space, `#`, `\`, `;`, `?` or non-ASCII byte. Each of these is
    /// either not allowed unencoded in a path or read as a delimiter by some server (`\` by
    /// Windows and browsers, `;` by Java servlet containers).
    #[error("character not allowed in path")]
    ForbiddenByte,
    /// A `%` not followed by two hex digits, which includes IIS's `%uXXXX`.
    #[error("malformed percent escape")]
    BadEscape,
    /// An escape for `/`, `\`, `;`, `%`, `?`, `#`, space or a control character: decoding it
    /// would change the path's structure for whoever decodes it, or decode again (`%252e`).
    #[error("percent escape of a delimiter or control character")]
    ForbiddenEscape,
    /// The decoded bytes are not UTF-8, which includes overlong forms such as `%c0%ae` that
    /// lenient decoders read as `.`.
    #[error("percent escapes do not decode to UTF-8")]
    InvalidUtf8,
    /// A character that Unicode normalisation, best-fit code page conversion or IDNA mapping
    /// turns into ASCII punctuation (`.`, `/`, `\`, `%`, `;`, `?`, `#`, …), such as U+FF0E or
    /// U+2215.
    #[error("character resembling a path delimiter")]
    Lookalike,
    /// A decoded character that is invisible, a space or a control character (U+00A0, U+200B,
    /// U+0085, …): trimming and stripping normalisers remove it, which can turn `..<U+00A0>` into
    /// `..`.
    #[error("invisible or whitespace character in path")]
    Invisible,
    /// `//` somewhere in the path. Servers differ on whether it collapses to `/`.
    #[error("empty path segment")]
    EmptySegment,
    /// A segment of dots only (`.`, `..`, `...`), written plainly or encoded. Resolving it is the
    /// classic way out of a public prefix; `...` is `..` on some Windows stacks.
    #[error("dot segment in path")]
    DotSegment,
    /// A segment ending in `.`, which some servers strip.
    #[error("path segment ends with a dot")]
    TrailingDot,
}

/// Checks and decodes a request path.
///
/// `raw`: the path part of the request target exactly as received (the caller has cut it at the
/// first `?`). Refuses, rather than repairs, anything that two parsers could read differently.
///
/// One pass over the raw bytes validates them and decodes each `%XX` once into a buffer of at
/// most `raw.len()` bytes; non-ASCII text, which only escapes can produce, is then checked
/// character by character.
pub fn normalise(raw: &[u8]) -> Result<NormalPath, PathError> {
    if raw.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut out = Vec::with_capacity(raw.len());
    out.push(b'/');
    // Where the current segment starts in `out`. Only raw `/` separates segments: an escaped
    // `/` is refused, so decoding never creates or removes a boundary.
    let mut segment_start = out.len();
    let mut non_ascii = false;
    let mut i = 1;
    while let Some(&byte) = raw.get(i) {
        match byte {
            b'/' => {
                check_segment(&out[segment_start..], false)?;
                out.push(b'/');
                segment_start = out.len();
                i += 1;
            }
            b'%' => {
                let decoded = match (raw.get(i + 1), raw.get(i + 2)) {
                    (Some(&hi), Some(&lo)) => match (hex_value(hi), hex_value(lo)) {
                        (Some(hi), Some(lo)) => hi << 4 | lo,
                        _ => return Err(PathError::BadEscape),
                    },
                    _ => return Err(PathError::BadEscape),
                };
                if is_forbidden_escape(decoded) {
                    return Err(PathError::ForbiddenEscape);
                }
                non_ascii |= !decoded.is_ascii();
                out.push(decoded);
                i += 3;
            }
            _ if is_forbidden_raw(byte) => return Err(PathError::ForbiddenByte),
            _ => {
                out.push(byte);
                i += 1;
            }
        }
    }
    check_segment(&out[segment_start..], true)?;

    let path = String::from_utf8(out).map_err(|_| PathError::InvalidUtf8)?;
    if non_ascii {
        for c in path.chars().filter(|c| !c.is_ascii()) {
            if is_lookalike(c) {
                return Err(PathError::Lookalike);
            }
            if is_invisible(c) {
                return Err(PathError::Invisible);
            }
        }
    }
    Ok(NormalPath(path))
}

/// Checks one decoded segment. Only the last may be empty (`/` itself, or `/a/`).
fn check_segment(segment: &[u8], last: bool) -> Result<(), PathError> {
    if segment.is_empty() {
        return if last {
            Ok(())
        } else {
            Err(PathError::EmptySegment)
        };
    }
    if segment.iter().all(|&b| b == b'.') {
        return Err(PathError::DotSegment);
    }
    // Windows stacks drop trailing dots (`/admin.` is `/admin` to IIS) while a route matcher
    // sees another name.
    if segment.last() == Some(&b'.') {
        return Err(PathError::TrailingDot);
    }
    Ok(())
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Raw bytes refused outright. `?` cannot occur when the caller cut the query off as promised;
/// refusing it keeps a caller's mistake from turning into a smuggled path.
fn is_forbidden_raw(b: u8) -> bool {
    b <= b' ' || b >= 0x7f || matches!(b, b'#' | b'\\' | b';' | b'?')
}

/// Bytes that must not come out of an escape.
fn is_forbidden_escape(b: u8) -> bool {
    b <= b' ' || b == 0x7f || matches!(b, b'/' | b'\\' | b';' | b'%' | b'?' | b'#')
}

/// Characters that some normaliser between the client and the application's router reads as
/// ASCII punctuation: NFKC (fullwidth, small and vertical forms, dot leaders, `℀`-style
/// compounds containing `/`), Windows best-fit conversion (`¥` and `₩` become `\` in the
/// Japanese and Korean code pages, `∕` becomes `/`), IDNA (ideographic full stops), and plain
/// visual confusion (`⁄`, `⧵`, `⧸`, `⧹`).
///
/// All of U+FF01–U+FF5E goes, letters included: NFKC turns `／ａｄｍｉｎ` into `/admin`, which
/// would reach a route this matcher never chose.
fn is_lookalike(c: char) -> bool {
    matches!(
        c,
        '\u{00A5}'                     // YEN SIGN: `\` in code page 932
            | '\u{20A9}'               // WON SIGN: `\` in code page 949
            | '\u{2024}'..='\u{2026}'  // ONE DOT LEADER, TWO DOT LEADER, HORIZONTAL ELLIPSIS
            | '\u{2044}'               // FRACTION SLASH
            | '\u{2100}' | '\u{2101}' | '\u{2105}' | '\u{2106}' // a/c, a/s, c/o, c/u
            | '\u{2215}' | '\u{2216}'  // DIVISION SLASH, SET MINUS
            | '\u{2488}'..='\u{249B}'  // DIGIT ONE FULL STOP … NUMBER TWENTY FULL STOP
            | '\u{29F5}'               // REVERSE SOLIDUS OPERATOR
            | '\u{29F8}' | '\u{29F9}'  // BIG SOLIDUS, BIG REVERSE SOLIDUS
            | '\u{3002}'               // IDEOGRAPHIC FULL STOP
            | '\u{FE10}'..='\u{FE19}'  // vertical forms: full stop, semicolon, ellipsis, …
            | '\u{FE50}'..='\u{FE6B}'  // small forms: full stop, semicolon, reverse solidus, %, …
            | '\u{FF01}'..='\u{FF5E}'  // fullwidth ASCII
            | '\u{FF61}'               // HALFWIDTH IDEOGRAPHIC FULL STOP
            | '\u{1F100}' // DIGIT ZERO FULL STOP
    )
}

/// Characters that print as nothing or as blank space, which trimming or stripping normalisers
/// may remove. Variation selectors stay allowed (emoji need them).
fn is_invisible(c: char) -> bool {
    c.is_control()
        || c.is_whitespace()
        || matches!(
            c,
            '\u{00AD}'                     // SOFT HYPHEN
                | '\u{034F}'               // COMBINING GRAPHEME JOINER
                | '\u{061C}'               // ARABIC LETTER MARK
                | '\u{115F}' | '\u{1160}'  // HANGUL CHOSEONG/JUNGSEONG FILLER
                | '\u{17B4}' | '\u{17B5}'  // KHMER VOWEL INHERENT AQ/AA
                | '\u{180B}'..='\u{180F}'  // MONGOLIAN FREE VARIATION SELECTORS, VOWEL SEPARATOR
                | '\u{200B}'..='\u{200F}'  // zero-width space/joiners, direction marks
                | '\u{202A}'..='\u{202E}'  // bidirectional embeddings and overrides
                | '\u{2060}'..='\u{206F}'  // word joiner, invisible operators, deprecated formats
                | '\u{3164}'               // HANGUL FILLER
                | '\u{FEFF}'               // ZERO WIDTH NO-BREAK SPACE (BOM)
                | '\u{FFA0}'               // HALFWIDTH HANGUL FILLER
                | '\u{FFF9}'..='\u{FFFB}'  // interlinear annotation
                | '\u{E0000}'..='\u{E0FFF}' // tags
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        match normalise(raw.as_bytes()) {
            Ok(p) => p.as_str().to_owned(),
            Err(e) => panic!("{raw:?} refused: {e}"),
        }
    }

    fn err(raw: &[u8]) -> PathError {
        match normalise(raw) {
            Ok(p) => panic!(
                "{:?} accepted as {:?}",
                String::from_utf8_lossy(raw),
                p.as_str()
            ),
            Err(e) => e,
        }
    }

    fn corpus() -> Vec<u8> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/corpus/path-confusion.txt"
        );
        std::fs::read(path).expect("tests/corpus/path-confusion.txt")
    }

    /// The corpus oracle: with `/public/` public and everything else protected, no line may
    /// reach the upstream anonymously. At this layer: refused, or normalised to something
    /// outside `/public/` (so only the protected default can apply).
    #[test]
    fn corpus_never_normalises_into_public() {
        let corpus = corpus();
        let (mut refused, mut outside) = (0, 0);
        for (n, line) in corpus.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let path = line.split(|&b| b == b'?').next().unwrap_or(line);
            match normalise(path) {
                Err(_) => refused += 1,
                Ok(p) => {
                    assert!(
                        !p.as_str().starts_with("/public/") && p.as_str() != "/public",
                        "line {}: {:?} normalised to {:?}",
                        n + 1,
                        String::from_utf8_lossy(line),
                        p.as_str()
                    );
                    outside += 1;
                }
            }
        }
        eprintln!("path-confusion.txt: {refused} refused, {outside} normalised outside /public/");
        assert!(refused + outside > 40, "corpus looks truncated");
    }

    #[test]
    fn legitimate_paths_pass() {
        for same in [
            "/",
            "/public",
            "/public/",
            "/public/a/b.css",
            "/a/b/",
            "/a.b/.c/a..b/-_~!$&'()*+,=:@",
            "/UPPER/Case",
            "/v1/items/42",
            "/.well-known/openid-configuration",
        ] {
            assert_eq!(ok(same), same);
        }
        assert_eq!(ok("/files/caf%C3%A9"), "/files/café");
        assert_eq!(ok("/files/caf%c3%a9"), "/files/café");
        assert_eq!(ok("/%61dmin"), "/admin");
        assert_eq!(ok("/a%2eb/c%2Ed"), "/a.b/c.d");
        assert_eq!(ok("/a%2Bb%3D"), "/a+b=");
        assert_eq!(ok("/%E2%9C%93/%F0%9F%98%80%EF%B8%8F"), "/✓/😀\u{FE0F}");
    }

    /// Decoded exactly once: an escaped `%` is refused rather than producing a new escape.
    #[test]
    fn escapes_are_decoded_once() {
        assert_eq!(err(b"/%252e"), PathError::ForbiddenEscape);
    }

    /// An encoded space is refused like any other encoded whitespace: servers disagree on
    /// whether it ends a segment name (trailing-space trimming on Windows).
    #[test]
    fn encoded_space_is_refused() {
        assert_eq!(err(b"/a%20b"), PathError::ForbiddenEscape);
        assert_eq!(err(b"/a+b%09"), PathError::ForbiddenEscape);
    }

    #[test]
    fn not_absolute() {
        for raw in [&b""[..], b"*", b"public/x", b"http://h/x", b"%2f"] {
            assert_eq!(err(raw), PathError::NotAbsolute);
        }
    }

    #[test]
    fn forbidden_byte() {
        for raw in [
            &b"/a b"[..],
            b"/a\tb",
            b"/a\0",
            b"/a\x7f",
            b"/a#b",
            b"/a\\b",
            b"/a;b",
            b"/a?b",
            b"/caf\xc3\xa9",
            b"/\xff",
        ] {
            assert_eq!(err(raw), PathError::ForbiddenByte, "{raw:?}");
        }
    }

    #[test]
    fn bad_escape() {
        for raw in [
            &b"/%"[..],
            b"/%2",
            b"/a%g0",
            b"/%0g",
            b"/%u2215",
            b"/%%32%65",
        ] {
            assert_eq!(err(raw), PathError::BadEscape, "{raw:?}");
        }
    }

    #[test]
    fn forbidden_escape() {
        for raw in [
            "/a%2fb", "/a%2Fb", "/a%5cb", "/a%3bb", "/a%25", "/a%3f", "/a%23", "/a%00", "/a%1f",
            "/a%7f", "/a%20", "/a%09", "/a%0a", "/a%0D",
        ] {
            assert_eq!(err(raw.as_bytes()), PathError::ForbiddenEscape, "{raw}");
        }
    }

    #[test]
    fn invalid_utf8() {
        for raw in [
            "/%c0%ae",
            "/%e0%80%ae",
            "/%c0%af",
            "/%c3",
            "/%80",
            "/%ed%a0%80",
            "/%f4%90%80%80",
        ] {
            assert_eq!(err(raw.as_bytes()), PathError::InvalidUtf8, "{raw}");
        }
    }

    #[test]
    fn lookalike() {
        for c in [
            '\u{FF0E}', '\u{FF0F}', '\u{FF3C}', '\u{2024}', '\u{2025}', '\u{2026}', '\u{FE52}',
            '\u{FE68}', '\u{2215}', '\u{2216}', '\u{2044}', '\u{29F5}', '\u{29F8}', '\u{29F9}',
            '\u{3002}', '\u{FF61}', '\u{00A5}', '\u{20A9}', '\u{FF05}', '\u{FF1B}', '\u{FF41}',
            '\u{2100}', '\u{2488}', '\u{FE19}',
        ] {
            assert_eq!(err(encode(c).as_bytes()), PathError::Lookalike, "{c:?}");
        }
    }

    #[test]
    fn invisible() {
        for c in [
            '\u{0085}',
            '\u{00A0}',
            '\u{00AD}',
            '\u{2000}',
            '\u{200B}',
            '\u{200D}',
            '\u{2028}',
            '\u{202E}',
            '\u{3000}',
            '\u{FEFF}',
            '\u{E0041}',
        ] {
            assert_eq!(err(encode(c).as_bytes()), PathError::Invisible, "{c:?}");
        }
    }

    #[test]
    fn empty_segment() {
        for raw in [&b"//"[..], b"//a", b"/a//b", b"/a//", b"/a/%41//"] {
            assert_eq!(err(raw), PathError::EmptySegment, "{raw:?}");
        }
    }

    #[test]
    fn dot_segment() {
        for raw in [
            &b"/."[..],
            b"/..",
            b"/...",
            b"/./",
            b"/a/../b",
            b"/a/..",
            b"/%2e",
            b"/%2E%2e/",
            b"/.%2e/x",
        ] {
            assert_eq!(err(raw), PathError::DotSegment, "{raw:?}");
        }
        for raw in [&b"/admin."[..], b"/admin./x", b"/a%2e"] {
            assert_eq!(err(raw), PathError::TrailingDot, "{raw:?}");
        }
        assert!(normalise(b"/a.b/c.d").is_ok());
    }

    #[test]
    fn errors_read_as_short_phrases() {
        let all = [
            PathError::NotAbsolute,
            PathError::ForbiddenByte,
            PathError::BadEscape,
            PathError::ForbiddenEscape,
            PathError::InvalidUtf8,
            PathError::Lookalike,
            PathError::Invisible,
            PathError::EmptySegment,
            PathError::DotSegment,
            PathError::TrailingDot,
        ];
        for e in all {
            let text = e.to_string();
            assert!(!text.is_empty() && text.len() < 60, "{text}");
        }
    }

    /// `/a/<c>` with `c` percent-encoded as UTF-8.
    fn encode(c: char) -> String {
        let mut buf = [0; 4];
        let mut out = String::from("/a");
        for b in c.encode_utf8(&mut buf).bytes() {
            out.push_str(&format!("%{b:02X}"));
        }
        out
    }
}
