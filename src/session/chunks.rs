//! Storing one sealed value across several cookies, and finding it again.
//!
//! Browsers keep at most about 4096 bytes of name and value per cookie and silently drop anything
//! larger, which would log a user out for no visible reason. A value that does not fit under
//! [`MAX_COOKIE_BYTES`] is therefore split into `<name>_0`, `<name>_1`, …; whenever the set of
//! cookies changes shape, the names the browser still holds but the new set does not overwrite are
//! expired, so a stale chunk can never be glued onto a fresh value.
//!
//! Reading is strict: anything that admits two readings (a plain cookie *and* chunks, a name sent
//! twice, a hole in the chunk numbers) is reported as [`Ambiguous`] instead of being resolved by
//! some precedence rule an attacker who can plant cookies (from a sibling subdomain, say) could
//! exploit.
//!
//! The `Cookie` header is parsed on every request, so parsing is a plain split on `;` that
//! allocates only for our own cookies.

use std::time::Duration;

use cookie::{Cookie, SameSite};

/// Max bytes of name+value in one cookie we emit (browsers allow about 4096; the rest is margin).
pub const MAX_COOKIE_BYTES: usize = 4000;

/// The most chunks one value may be split into, on writing and on reading.
///
/// Sixteen chunks is ~64 KiB of cookies, far more than servers accept in request headers; the cap
/// bounds what a request can make us allocate and refuses values no browser would send back.
pub const MAX_CHUNKS: usize = 16;

/// The longest cookie name accepted, so that a chunk always has room for a value.
pub const MAX_NAME_LEN: usize = 128;

/// Attributes of every cookie we set (and of the expiring cookies, which must match to replace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieAttrs {
    /// `Secure`: sent over HTTPS only.
    pub secure: bool,
    /// `SameSite`.
    pub same_site: SameSite,
    /// `Domain`; `None` for a host-only cookie.
    pub domain: Option<String>,
    /// `Path`; must start with `/`.
    pub path: String,
    /// `HttpOnly`: invisible to scripts.
    pub http_only: bool,
}

impl CookieAttrs {
    /// The attributes `[session]` asks for: `Path=/`, `HttpOnly`, and its `Secure`,
    /// `SameSite` and `Domain`.
    pub fn from_config(cfg: &crate::config::Session) -> CookieAttrs {
        CookieAttrs {
            secure: cfg.secure,
            same_site: cfg.same_site,
            domain: cfg.domain.clone(),
            path: "/".into(),
            http_only: true,
        }
    }
}

/// Why Set-Cookie values could not be produced. Each of these would otherwise give a header the
/// browser rejects or misreads, so it is refused outright.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    /// The name is empty, longer than [`MAX_NAME_LEN`] or not an RFC 6265 token.
    #[error("invalid cookie name")]
    Name,
    /// The value contains a byte outside RFC 6265 cookie-octets (or is empty).
    #[error("invalid cookie value")]
    Value,
    /// The value needs more than [`MAX_CHUNKS`] cookies.
    #[error("cookie value too large")]
    TooLarge,
    /// `Domain` is empty or contains characters a host name cannot.
    #[error("invalid cookie domain")]
    Domain,
    /// `Path` does not start with `/` or contains `;`, controls or non-ASCII.
    #[error("invalid cookie path")]
    Path,
    /// The attributes break a rule browsers enforce by dropping the cookie: `SameSite=None`
    /// without `Secure`, or a `__Secure-`/`__Host-` prefix without what it demands.
    #[error("cookie attributes a browser would reject")]
    Attributes,
}

/// One `Set-Cookie` header value, built here from a checked name, value and attributes: the
/// only way portcullis makes one, so every cookie it sets went through the same checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetCookie(String);

impl SetCookie {
    /// The header value.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The header value, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::fmt::Display for SetCookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for SetCookie {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

/// What a request carries under one cookie name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadCookie {
    /// The plain value, or the chunks concatenated; `None` when absent or when one of the cookies
    /// had a value that is not a valid cookie value (the whole value is then unusable).
    pub value: Option<String>,
    /// Names portcullis sets (`name`, then `name_0` … `name_15`) that the request carried, each
    /// once: pass to [`set_cookies`] / [`clear_cookies`] so stale ones get expired. Other
    /// `name_…` cookies portcullis never set are not listed, so they cost no `Set-Cookie`.
    pub present: Vec<String>,
}

/// Which form of ambiguity [`read_cookie`] met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmbiguityReason {
    /// Both `name` and `name_N` cookies were sent.
    PlainAndChunked,
    /// The same name was sent more than once (e.g. cookies for two domains or paths).
    Duplicate,
    /// A `name_…` suffix that starts with a digit but is not a canonical chunk index below
    /// [`MAX_CHUNKS`] (leading zero, trailing non-digits, too large).
    BadChunkIndex,
    /// Chunk indices are not contiguous from 0.
    ChunkGap,
}

/// The request's cookies under our name admit more than one reading.
///
/// Carries the names seen, so the caller can still expire them all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ambiguous session cookies ({reason:?})")]
pub struct Ambiguous {
    /// What was wrong.
    pub reason: AmbiguityReason,
    /// Names of our cookies the request carried, as in [`ReadCookie::present`].
    pub present: Vec<String>,
}

/// Set-Cookie header values that store `value` under `name` (single cookie or chunks), with
/// `max_age`, plus expiring cookies (Max-Age=0, same Path/Domain) for every name in `present` that
/// the new set does not overwrite.
///
/// Names in `present` that are not ours (see [`is_session_cookie_name`]) are ignored: this function
/// only ever touches its own cookies.
pub fn set_cookies(
    name: &str,
    value: &str,
    attrs: &CookieAttrs,
    max_age: Duration,
    present: &[String],
) -> Result<Vec<SetCookie>, CookieError> {
    check_name(name)?;
    check_attrs(name, attrs)?;
    if value.is_empty() || !value.bytes().all(is_cookie_octet) {
        return Err(CookieError::Value);
    }
    let max_age =
        cookie::time::Duration::seconds(i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX));

    // (cookie name, value slice) for every cookie that will hold part of the value.
    let mut parts: Vec<(String, &str)> = Vec::new();
    if name.len() + value.len() <= MAX_COOKIE_BYTES {
        parts.push((name.to_owned(), value));
    } else {
        let mut rest = value;
        while !rest.is_empty() {
            if parts.len() == MAX_CHUNKS {
                return Err(CookieError::TooLarge);
            }
            let chunk_name = format!("{name}_{}", parts.len());
            // `check_name` bounds the name, so there is always room; the value is ASCII (checked
            // above), so every byte offset is a character boundary.
            let room = MAX_COOKIE_BYTES - chunk_name.len();
            let (chunk, tail) = rest.split_at(room.min(rest.len()));
            parts.push((chunk_name, chunk));
            rest = tail;
        }
    }

    let mut out: Vec<SetCookie> = parts
        .iter()
        .map(|(cookie_name, part)| build(cookie_name, part, attrs, max_age))
        .collect();
    let written: Vec<&str> = parts.iter().map(|(n, _)| n.as_str()).collect();
    out.extend(expire_stale(name, attrs, present, &written));
    Ok(out)
}

/// Set-Cookie values expiring `name` and every one of our names in `present`.
pub fn clear_cookies(
    name: &str,
    attrs: &CookieAttrs,
    present: &[String],
) -> Result<Vec<SetCookie>, CookieError> {
    check_name(name)?;
    check_attrs(name, attrs)?;
    let mut out = vec![build(name, "", attrs, cookie::time::Duration::ZERO)];
    out.extend(expire_stale(name, attrs, present, &[name]));
    Ok(out)
}

/// What the request carries under `name`, from all its `Cookie` header values: the plain cookie
/// `name`, or the concatenation of `name_0..name_{k-1}`.
///
/// `Err` when the cookies admit more than one reading (see [`AmbiguityReason`]); `Ok` with
/// `value: None` when absent. A `name_` suffix that does not start with a digit is someone else's
/// cookie (`session_id` next to our `session`) and is left alone.
pub fn read_cookie(cookie_headers: &[&[u8]], name: &str) -> Result<ReadCookie, Ambiguous> {
    let name_str = name;
    let name = name.as_bytes();
    // Which of the names portcullis sets came: the plain name (bit MAX_CHUNKS) and each chunk.
    // Only these are reported for expiry, each once: a request with thousands of made-up
    // `name_<digits>` cookies costs one pass over its header and at most 17 Set-Cookie lines.
    let mut seen: u32 = 0;
    let mut plain: Option<&[u8]> = None;
    let mut chunks: [Option<&[u8]>; MAX_CHUNKS] = [None; MAX_CHUNKS];
    let mut any_chunk = false;
    let mut problem: Option<AmbiguityReason> = None;
    let mut note = |reason: AmbiguityReason| {
        problem.get_or_insert(reason);
    };

    for header in cookie_headers {
        for (cookie_name, value) in pairs(header) {
            let Some(kind) = classify(cookie_name, name) else {
                continue;
            };
            let slot = match kind {
                Ours::Plain => {
                    seen |= 1 << MAX_CHUNKS;
                    &mut plain
                }
                Ours::Chunk(Some(index)) => {
                    seen |= 1 << index;
                    any_chunk = true;
                    &mut chunks[index]
                }
                Ours::Chunk(None) => {
                    note(AmbiguityReason::BadChunkIndex);
                    continue;
                }
            };
            if slot.replace(value).is_some() {
                note(AmbiguityReason::Duplicate);
            }
        }
    }

    if plain.is_some() && any_chunk {
        note(AmbiguityReason::PlainAndChunked);
    }
    let count = chunks.iter().take_while(|c| c.is_some()).count();
    if chunks[count..].iter().any(Option::is_some) {
        note(AmbiguityReason::ChunkGap);
    }
    let mut present = Vec::with_capacity(seen.count_ones() as usize);
    if seen & (1 << MAX_CHUNKS) != 0 {
        present.push(name_str.to_owned());
    }
    present.extend(
        (0..MAX_CHUNKS)
            .filter(|i| seen & (1 << i) != 0)
            .map(|i| format!("{name_str}_{i}")),
    );
    if let Some(reason) = problem {
        return Err(Ambiguous { reason, present });
    }

    let value = match plain {
        Some(v) => valid_value(v).map(str::to_owned),
        None if count > 0 => {
            let mut joined = String::new();
            let mut ok = true;
            for chunk in chunks.iter().take(count).flatten() {
                match valid_value(chunk) {
                    Some(v) => joined.push_str(v),
                    None => ok = false,
                }
            }
            ok.then_some(joined)
        }
        None => None,
    };
    Ok(ReadCookie { value, present })
}

/// True for `name` itself and `name_<digits>`: used to strip our cookies before forwarding
/// upstream.
///
/// Exactly the names [`read_cookie`] treats as ours, including malformed chunk names (`name_007`,
/// `name_1x`, `name_`) that make it report ambiguity: anything that could pass for one of ours never
/// reaches the application, and every such name can be expired through `present`.
pub fn is_session_cookie_name(candidate: &str, name: &str) -> bool {
    classify(candidate.as_bytes(), name.as_bytes()).is_some()
}

/// Rebuilds a `Cookie` header value without every cookie for which `drop(name)` is true; `None` if
/// nothing remains.
///
/// The cookies kept are passed through byte for byte, in order, joined by `"; "`. A cookie whose
/// name is not UTF-8 cannot be one of ours and is kept.
pub fn strip_cookies(header: &[u8], drop: impl Fn(&str) -> bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(header.len());
    for piece in pieces(header) {
        let (cookie_name, _) = split_pair(piece);
        if std::str::from_utf8(cookie_name).is_ok_and(&drop) {
            continue;
        }
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(piece);
    }
    (!out.is_empty()).then_some(out)
}

/// How a cookie name relates to ours.
enum Ours {
    Plain,
    /// `name_<suffix>` with a suffix starting with a digit; `None` when it is not a canonical index.
    Chunk(Option<usize>),
}

fn classify(candidate: &[u8], name: &[u8]) -> Option<Ours> {
    if name.is_empty() {
        // No name, no cookies of ours: never let "" match every cookie.
        return None;
    }
    let rest = candidate.strip_prefix(name)?;
    if rest.is_empty() {
        return Some(Ours::Plain);
    }
    let suffix = rest.strip_prefix(b"_")?;
    match suffix.first() {
        Some(b) if b.is_ascii_digit() => Some(Ours::Chunk(chunk_index(suffix))),
        // Empty suffix (`name_`) looks like a truncated chunk name: treat it as a bad index.
        None => Some(Ours::Chunk(None)),
        Some(_) => None,
    }
}

/// Canonical decimal below [`MAX_CHUNKS`]: digits only, no leading zero.
fn chunk_index(suffix: &[u8]) -> Option<usize> {
    if suffix.len() > 1 && suffix[0] == b'0' {
        return None;
    }
    if suffix.len() > 2 || !suffix.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let index = suffix
        .iter()
        .fold(0usize, |acc, d| acc * 10 + usize::from(d - b'0'));
    (index < MAX_CHUNKS).then_some(index)
}

/// `(name, value)` of every cookie in all `Cookie` headers whose name and value are well-formed
/// (used for the per-login flow cookies).
pub fn cookie_pairs<'a>(
    cookie_headers: &'a [&'a [u8]],
) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    cookie_headers
        .iter()
        .flat_map(|h| pairs(h))
        .filter_map(|(n, v)| {
            let name = std::str::from_utf8(n).ok().filter(|n| !n.is_empty())?;
            Some((name, valid_value(v)?))
        })
}

/// `(name, value)` of every non-empty `;`-separated piece, both trimmed of spaces and tabs.
fn pairs(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    pieces(header).map(split_pair)
}

/// Every non-empty `;`-separated piece, trimmed of spaces and tabs. The separators are found
/// with `memchr`: a session cookie is a kilobyte or more of one value, scanned on every request,
/// and a byte-at-a-time split was the largest cost of authenticating a request.
fn pieces(header: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    memchr::memchr_iter(b';', header)
        .chain(std::iter::once(header.len()))
        .filter_map(move |end| {
            let piece = header[start..end].trim_ascii();
            start = end + 1;
            (!piece.is_empty()).then_some(piece)
        })
}

/// Splits at the first `=`; a piece without one is a nameless cookie (RFC 6265bis), which can
/// never match one of our names.
fn split_pair(piece: &[u8]) -> (&[u8], &[u8]) {
    match piece.iter().position(|&b| b == b'=') {
        Some(i) => (piece[..i].trim_ascii(), piece[i + 1..].trim_ascii()),
        None => (&[], piece),
    }
}

/// The value as `&str` if it is non-empty and made of cookie-octets only (which are ASCII).
fn valid_value(value: &[u8]) -> Option<&str> {
    // No early exit: the whole value is checked in one branch-free pass the compiler can
    // vectorise (a valid value, the common case, is read to the end anyway).
    let valid = value.iter().fold(true, |ok, &b| ok & is_cookie_octet(b));
    if value.is_empty() || !valid {
        return None;
    }
    std::str::from_utf8(value).ok()
}

/// RFC 6265 cookie-octet: printable ASCII except space, `"`, `,`, `;` and `\`.
fn is_cookie_octet(b: u8) -> bool {
    // The same set as `matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)`,
    // written without branches (see `valid_value`).
    (b.wrapping_sub(0x21) < 0x5E) & (b != b'"') & (b != b',') & (b != b';') & (b != b'\\')
}

/// RFC 7230 token character (RFC 6265 cookie-name).
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn check_name(name: &str) -> Result<(), CookieError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.bytes().all(is_token_char) {
        return Err(CookieError::Name);
    }
    Ok(())
}

fn check_attrs(name: &str, attrs: &CookieAttrs) -> Result<(), CookieError> {
    if let Some(domain) = &attrs.domain {
        let host = domain.strip_prefix('.').unwrap_or(domain);
        let ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !ok {
            return Err(CookieError::Domain);
        }
    }
    let path_ok = attrs.path.starts_with('/')
        && attrs
            .path
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b';');
    if !path_ok {
        return Err(CookieError::Path);
    }
    let secure_needed = attrs.same_site == SameSite::None || name.starts_with("__Secure-");
    let host_prefix_broken = name.starts_with("__Host-")
        && (!attrs.secure || attrs.domain.is_some() || attrs.path != "/");
    if (secure_needed && !attrs.secure) || host_prefix_broken {
        return Err(CookieError::Attributes);
    }
    Ok(())
}

/// Expiring cookies for our names in `present` not in `keep`, each once.
fn expire_stale(
    name: &str,
    attrs: &CookieAttrs,
    present: &[String],
    keep: &[&str],
) -> Vec<SetCookie> {
    let mut expired: Vec<&str> = Vec::new();
    for stale in present.iter().map(String::as_str) {
        let ours = is_session_cookie_name(stale, name) && stale.bytes().all(is_token_char);
        if ours && !keep.contains(&stale) && !expired.contains(&stale) {
            expired.push(stale);
        }
    }
    expired
        .into_iter()
        .map(|stale| build(stale, "", attrs, cookie::time::Duration::ZERO))
        .collect()
}

fn build(
    name: &str,
    value: &str,
    attrs: &CookieAttrs,
    max_age: cookie::time::Duration,
) -> SetCookie {
    let mut builder = Cookie::build((name, value))
        .path(attrs.path.as_str())
        .secure(attrs.secure)
        .http_only(attrs.http_only)
        .same_site(attrs.same_site)
        .max_age(max_age);
    if let Some(domain) = &attrs.domain {
        builder = builder.domain(domain.as_str());
    }
    SetCookie(builder.build().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "_portcullis";

    fn attrs() -> CookieAttrs {
        CookieAttrs {
            secure: true,
            same_site: SameSite::Lax,
            domain: None,
            path: "/".to_owned(),
            http_only: true,
        }
    }

    fn hour() -> Duration {
        Duration::from_secs(3600)
    }

    /// The `name=value` part of a Set-Cookie value.
    fn pair(set_cookie: &str) -> (&str, &str) {
        let first = set_cookie.split(';').next().unwrap();
        first.split_once('=').unwrap()
    }

    fn max_age(set_cookie: &str) -> &str {
        set_cookie
            .split("; ")
            .find_map(|a| a.strip_prefix("Max-Age="))
            .unwrap()
    }

    /// What a browser would send back after receiving `set`: the live cookies, in order.
    fn browser_header(set: &[SetCookie]) -> String {
        set.iter()
            .filter(|c| max_age(c) != "0")
            .map(|c| {
                let (n, v) = pair(c);
                format!("{n}={v}")
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn read(header: &str) -> Result<ReadCookie, Ambiguous> {
        read_cookie(&[header.as_bytes()], NAME)
    }

    fn sealed_like(len: usize) -> String {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        (0..len)
            .map(|i| char::from(alphabet[(i * 7 + i / 64) % 64]))
            .collect()
    }

    #[test]
    fn cookie_octets_are_exactly_rfc_6265s() {
        for b in 0..=u8::MAX {
            let rfc = matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E);
            assert_eq!(is_cookie_octet(b), rfc, "byte {b:#04x}");
        }
    }

    #[test]
    fn pieces_are_trimmed_and_empty_ones_skipped() {
        let got: Vec<&[u8]> = pieces(b" a=1;;b=2 ;\t;c ").collect();
        assert_eq!(got, [&b"a=1"[..], b"b=2", b"c"]);
        assert_eq!(pieces(b"").count(), 0);
        assert_eq!(pieces(b";").count(), 0);
    }

    #[test]
    fn single_cookie_round_trip() {
        let value = sealed_like(500);
        let set = set_cookies(NAME, &value, &attrs(), hour(), &[]).unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(pair(&set[0]), (NAME, value.as_str()));
        let got = read(&browser_header(&set)).unwrap();
        assert_eq!(got.value.as_deref(), Some(value.as_str()));
        assert_eq!(got.present, vec![NAME.to_owned()]);
    }

    #[test]
    fn largest_single_cookie_is_not_chunked() {
        let value = sealed_like(MAX_COOKIE_BYTES - NAME.len());
        let set = set_cookies(NAME, &value, &attrs(), hour(), &[]).unwrap();
        assert_eq!(set.len(), 1);
        let value = sealed_like(MAX_COOKIE_BYTES - NAME.len() + 1);
        let set = set_cookies(NAME, &value, &attrs(), hour(), &[]).unwrap();
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn chunked_round_trip() {
        let value = sealed_like(10_000);
        let set = set_cookies(NAME, &value, &attrs(), hour(), &[]).unwrap();
        assert_eq!(set.len(), 3);
        for (i, c) in set.iter().enumerate() {
            let (n, v) = pair(c);
            assert_eq!(n, format!("{NAME}_{i}"));
            assert!(n.len() + v.len() <= MAX_COOKIE_BYTES);
        }
        let got = read(&browser_header(&set)).unwrap();
        assert_eq!(got.value.as_deref(), Some(value.as_str()));
        assert_eq!(
            got.present,
            vec![
                format!("{NAME}_0"),
                format!("{NAME}_1"),
                format!("{NAME}_2")
            ]
        );
    }

    #[test]
    fn chunks_may_arrive_in_any_order_and_across_headers() {
        let value = sealed_like(10_000);
        let set = set_cookies(NAME, &value, &attrs(), hour(), &[]).unwrap();
        let live: Vec<String> = set
            .iter()
            .map(|c| {
                let (n, v) = pair(c);
                format!("{n}={v}")
            })
            .collect();
        let first = format!("other=1; {}", live[2]);
        let second = format!("{}; {}", live[1], live[0]);
        let got = read_cookie(&[first.as_bytes(), second.as_bytes()], NAME).unwrap();
        assert_eq!(got.value.as_deref(), Some(value.as_str()));
    }

    #[test]
    fn shrinking_clears_chunks() {
        let big = set_cookies(NAME, &sealed_like(10_000), &attrs(), hour(), &[]).unwrap();
        let present = read(&browser_header(&big)).unwrap().present;
        let small = set_cookies(NAME, "small", &attrs(), hour(), &present).unwrap();
        assert_eq!(small.len(), 4);
        assert_eq!(pair(&small[0]), (NAME, "small"));
        for (i, c) in small[1..].iter().enumerate() {
            assert_eq!(pair(c), (format!("{NAME}_{i}").as_str(), ""));
            assert_eq!(max_age(c), "0");
            assert!(c.contains("Path=/"));
        }
        let got = read(&browser_header(&small)).unwrap();
        assert_eq!(got.value.as_deref(), Some("small"));
    }

    #[test]
    fn shrinking_chunk_count_clears_the_tail() {
        let big = set_cookies(NAME, &sealed_like(10_000), &attrs(), hour(), &[]).unwrap();
        let present = read(&browser_header(&big)).unwrap().present;
        let value = sealed_like(6_000);
        let set = set_cookies(NAME, &value, &attrs(), hour(), &present).unwrap();
        let names: Vec<_> = set.iter().map(|c| (pair(c).0, max_age(c))).collect();
        let (n0, n1, n2) = (
            format!("{NAME}_0"),
            format!("{NAME}_1"),
            format!("{NAME}_2"),
        );
        assert_eq!(
            names,
            vec![
                (n0.as_str(), "3600"),
                (n1.as_str(), "3600"),
                (n2.as_str(), "0")
            ]
        );
    }

    #[test]
    fn growing_clears_plain() {
        let present = vec![NAME.to_owned()];
        let value = sealed_like(10_000);
        let set = set_cookies(NAME, &value, &attrs(), hour(), &present).unwrap();
        assert_eq!(set.len(), 4);
        assert_eq!(pair(&set[3]), (NAME, ""));
        assert_eq!(max_age(&set[3]), "0");
        let got = read(&browser_header(&set)).unwrap();
        assert_eq!(got.value.as_deref(), Some(value.as_str()));
    }

    #[test]
    fn foreign_present_names_are_not_touched() {
        let present = vec!["other".to_owned(), format!("{NAME}x"), format!("{NAME}_id")];
        let set = set_cookies(NAME, "v", &attrs(), hour(), &present).unwrap();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn clear_expires_plain_and_chunks() {
        let present = vec![format!("{NAME}_0"), format!("{NAME}_1"), "other".to_owned()];
        let set = clear_cookies(NAME, &attrs(), &present).unwrap();
        let names: Vec<_> = set.iter().map(|c| pair(c).0).collect();
        assert_eq!(
            names,
            vec![NAME.to_owned(), format!("{NAME}_0"), format!("{NAME}_1")]
        );
        assert!(set
            .iter()
            .all(|c| max_age(c) == "0" && pair(c).1.is_empty()));
    }

    #[test]
    fn attributes_are_emitted() {
        let a = CookieAttrs {
            secure: true,
            same_site: SameSite::Strict,
            domain: Some("example.com".to_owned()),
            path: "/app".to_owned(),
            http_only: true,
        };
        let set = set_cookies(
            NAME,
            "v",
            &a,
            Duration::from_secs(7200),
            &[format!("{NAME}_0")],
        )
        .unwrap();
        for (c, age) in set.iter().zip(["7200", "0"]) {
            let attrs: Vec<&str> = c.split("; ").skip(1).collect();
            for want in [
                "HttpOnly",
                "Secure",
                "SameSite=Strict",
                "Domain=example.com",
                "Path=/app",
            ] {
                assert!(attrs.contains(&want), "{want} missing from {c}");
            }
            assert_eq!(max_age(c), age);
        }

        let lax = CookieAttrs {
            secure: false,
            http_only: false,
            ..attrs()
        };
        let c = &set_cookies(NAME, "v", &lax, hour(), &[]).unwrap()[0];
        assert!(!c.contains("Secure") && !c.contains("HttpOnly") && !c.contains("Domain"));
        assert!(c.contains("SameSite=Lax"));
    }

    #[test]
    fn huge_max_age_saturates() {
        let c = &set_cookies(NAME, "v", &attrs(), Duration::from_secs(u64::MAX), &[]).unwrap()[0];
        assert!(max_age(c).parse::<i64>().unwrap() > 0);
    }

    #[test]
    fn invalid_inputs_are_refused() {
        let a = attrs();
        for bad in ["", "a b", "a;b", "a=b", "é", &"n".repeat(MAX_NAME_LEN + 1)] {
            assert_eq!(
                set_cookies(bad, "v", &a, hour(), &[]),
                Err(CookieError::Name),
                "{bad:?}"
            );
        }
        for bad in [
            "",
            "a b",
            "a;b",
            "a,b",
            "a\"b",
            "a\\b",
            "é",
            "a\r\nSet-Cookie: x=y",
        ] {
            assert_eq!(
                set_cookies(NAME, bad, &a, hour(), &[]),
                Err(CookieError::Value),
                "{bad:?}"
            );
        }
        let too_big = sealed_like(MAX_CHUNKS * MAX_COOKIE_BYTES);
        assert_eq!(
            set_cookies(NAME, &too_big, &a, hour(), &[]),
            Err(CookieError::TooLarge)
        );

        for domain in ["", ".", "a;b", "a b", "exa/mple.com"] {
            let d = CookieAttrs {
                domain: Some(domain.to_owned()),
                ..attrs()
            };
            assert_eq!(
                clear_cookies(NAME, &d, &[]),
                Err(CookieError::Domain),
                "{domain:?}"
            );
        }
        for path in ["", "app", "/a;b", "/a b", "/\u{e9}"] {
            let p = CookieAttrs {
                path: path.to_owned(),
                ..attrs()
            };
            assert_eq!(
                clear_cookies(NAME, &p, &[]),
                Err(CookieError::Path),
                "{path:?}"
            );
        }
        let none_insecure = CookieAttrs {
            same_site: SameSite::None,
            secure: false,
            ..attrs()
        };
        assert_eq!(
            clear_cookies(NAME, &none_insecure, &[]),
            Err(CookieError::Attributes)
        );
        let host_with_domain = CookieAttrs {
            domain: Some("example.com".to_owned()),
            ..attrs()
        };
        assert_eq!(
            clear_cookies("__Host-s", &host_with_domain, &[]),
            Err(CookieError::Attributes)
        );
        assert!(clear_cookies("__Host-s", &attrs(), &[]).is_ok());
        let insecure = CookieAttrs {
            secure: false,
            ..attrs()
        };
        assert_eq!(
            clear_cookies("__Secure-s", &insecure, &[]),
            Err(CookieError::Attributes)
        );
    }

    #[test]
    fn absent() {
        assert_eq!(read("").unwrap(), ReadCookie::default());
        assert_eq!(read("a=1; b=2").unwrap(), ReadCookie::default());
        assert_eq!(read_cookie(&[], NAME).unwrap(), ReadCookie::default());
        // Prefix look-alikes are someone else's cookies.
        let got = read(&format!("{NAME}x=1; {NAME}_id=2; x{NAME}=3; {NAME}_-1=4")).unwrap();
        assert_eq!(got, ReadCookie::default());
    }

    fn reason(header: &str) -> AmbiguityReason {
        read(header).unwrap_err().reason
    }

    #[test]
    fn ambiguous_forms_are_refused() {
        let n = NAME;
        assert_eq!(reason(&format!("{n}=a; {n}=b")), AmbiguityReason::Duplicate);
        assert_eq!(reason(&format!("{n}=a; {n}=a")), AmbiguityReason::Duplicate);
        assert_eq!(
            reason(&format!("{n}_0=a; {n}_0=b")),
            AmbiguityReason::Duplicate
        );
        assert_eq!(
            reason(&format!("{n}=a; {n}_0=b")),
            AmbiguityReason::PlainAndChunked
        );
        assert_eq!(
            reason(&format!("{n}_1=b; {n}=a")),
            AmbiguityReason::PlainAndChunked
        );
        assert_eq!(
            reason(&format!("{n}_0=a; {n}_2=c")),
            AmbiguityReason::ChunkGap
        );
        assert_eq!(
            reason(&format!("{n}_1=a; {n}_2=c")),
            AmbiguityReason::ChunkGap
        );
        assert_eq!(reason(&format!("{n}_1=a")), AmbiguityReason::ChunkGap);
        for suffix in ["00", "01", "1a", "", "16", "99", "100", "0x1", "1.5"] {
            let header = format!("{n}_0=a; {n}_{suffix}=b");
            assert_eq!(reason(&header), AmbiguityReason::BadChunkIndex, "{header}");
        }
        // Duplicates across two Cookie headers count too.
        let h1 = format!("{n}=a");
        let err = read_cookie(&[h1.as_bytes(), h1.as_bytes()], n).unwrap_err();
        assert_eq!(err.reason, AmbiguityReason::Duplicate);
        assert_eq!(err.present, vec![n.to_owned()]);
    }

    #[test]
    fn ambiguity_reports_names_to_expire() {
        let err = read(&format!("{NAME}_0=b; x=1; {NAME}=a; {NAME}_007=c")).unwrap_err();
        // Only names portcullis could have set: `_007` is none of them.
        assert_eq!(err.present, vec![NAME.to_owned(), format!("{NAME}_0")]);
        let set = clear_cookies(NAME, &attrs(), &err.present).unwrap();
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn thousands_of_made_up_chunks_cost_one_pass_and_at_most_17_names() {
        let mut header = String::new();
        for i in 0..5500 {
            header.push_str(&format!("{NAME}_{i}=x; "));
        }
        header.push_str(&format!("{NAME}=y; {NAME}_3=z"));
        let err = read(&header).unwrap_err();
        assert_eq!(err.present.len(), MAX_CHUNKS + 1);
        assert_eq!(err.present[0], NAME);
        assert_eq!(err.present[16], format!("{NAME}_15"));
        assert_eq!(
            clear_cookies(NAME, &attrs(), &err.present).unwrap().len(),
            17
        );
    }

    #[test]
    fn odd_values_are_ignored() {
        for v in ["\"quoted\"", "a\\b", "\u{e9}", "a,b", ""] {
            let got = read(&format!("{NAME}={v}")).unwrap();
            assert_eq!(got.value, None, "{v:?}");
            assert_eq!(got.present, vec![NAME.to_owned()]);
        }
        let bytes: &[u8] = b"_portcullis=\xff\xfe; a=1";
        let got = read_cookie(&[bytes], NAME).unwrap();
        assert_eq!(got.value, None);
        // One bad chunk spoils the whole value.
        let got = read(&format!("{NAME}_0=good; {NAME}_1=\"bad\"")).unwrap();
        assert_eq!(got.value, None);
        assert_eq!(got.present.len(), 2);
        // Non-UTF-8 in other cookies is none of our business.
        let bytes: &[u8] = b"x=\xff; _portcullis=ok";
        assert_eq!(
            read_cookie(&[bytes], NAME).unwrap().value.as_deref(),
            Some("ok")
        );
    }

    #[test]
    fn parsing_tolerates_whitespace_and_empty_pieces() {
        let got = read(&format!(";; \t{NAME}=abc ;other;=x; ")).unwrap();
        assert_eq!(got.value.as_deref(), Some("abc"));
    }

    #[test]
    fn session_cookie_names() {
        assert!(is_session_cookie_name(NAME, NAME));
        assert!(is_session_cookie_name("_portcullis_0", NAME));
        assert!(is_session_cookie_name("_portcullis_15", NAME));
        assert!(is_session_cookie_name("_portcullis_007", NAME));
        assert!(is_session_cookie_name("_portcullis_1x", NAME));
        assert!(is_session_cookie_name("_portcullis_", NAME));
        assert!(!is_session_cookie_name("_portcullis_id", NAME));
        assert!(!is_session_cookie_name("_portcullisx", NAME));
        assert!(!is_session_cookie_name("x_portcullis", NAME));
        assert!(!is_session_cookie_name("_Portcullis", NAME));
        assert!(!is_session_cookie_name("anything", ""));
    }

    #[test]
    fn strip_keeps_others_in_order() {
        let header = format!("a=1; {NAME}=x;b=2 ; {NAME}_0=y; c; {NAME}_id=3; d==4");
        let out = strip_cookies(header.as_bytes(), |n| is_session_cookie_name(n, NAME)).unwrap();
        assert_eq!(out, format!("a=1; b=2; c; {NAME}_id=3; d==4").into_bytes());
    }

    #[test]
    fn strip_returns_none_when_nothing_remains() {
        let header = format!("{NAME}=x; {NAME}_0=y;  ;");
        assert_eq!(
            strip_cookies(header.as_bytes(), |n| is_session_cookie_name(n, NAME)),
            None
        );
        assert_eq!(strip_cookies(b"", |_| false), None);
    }

    #[test]
    fn strip_keeps_non_utf8_bytes() {
        let out = strip_cookies(b"\xff=1; _portcullis=2; a=\xfe", |n| n == NAME).unwrap();
        assert_eq!(out, b"\xff=1; a=\xfe".to_vec());
    }
}
