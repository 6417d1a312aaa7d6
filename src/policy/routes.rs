//! Which rule applies to a request: the configured routes, checked once at start-up and ordered
//! so that the first route that fits a request is the most specific one.
//!
//! A request that fits no route gets the caller's default, which is closed: authentication
//! required, no further requirements. Route paths are compared with the request's
//! [`NormalPath`], byte for byte, so letter case matters; an application that treats `/ADMIN` as
//! `/admin` must not rely on a route for `/admin` being stricter than its parent.

use crate::host::{parse_authority, parse_host, Host, HostError, HostKey};

use http::Method;

use super::path::{normalise, NormalPath};
use super::rules::Requirements;
use crate::client_cert::CertRequirements;

/// What a route demands of the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// No authentication at all (client identity headers are still stripped elsewhere).
    Public,
    /// Any authenticated caller, plus the requirements (empty = just authenticated).
    Authenticated(Requirements),
}

/// Which bearer tokens a route takes: any valid token, or only RFC 9068 access tokens (`typ` at+jwt), or only ID tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenKind {
    /// Any token that verifies.
    #[default]
    Any,
    /// Only RFC 9068 access tokens (`typ` `at+jwt`).
    Access,
    /// Only ID tokens.
    Id,
}

/// A route as configured, before validation.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// A path as it would appear in a request (`/api/`, `/files/caf%C3%A9`). `/x` and `/x/`
    /// both mean the subtree at `/x` unless `exact`.
    pub path: String,
    /// Match this path only, not the paths below it.
    pub exact: bool,
    /// The methods this route applies to; empty for all. `GET` also covers `HEAD`.
    pub methods: Vec<Method>,
    /// The host this route applies to (no scheme, no port; IPv6 in brackets); `None` for all.
    pub host: Option<String>,
    /// What the route demands.
    pub access: Access,
    /// Which bearer tokens it takes.
    pub token_kind: TokenKind,
    /// What it asks of the client certificate.
    pub client_cert: CertRequirements,
    /// Only sender-constrained bearer tokens (`cnf`) are accepted.
    pub require_bound_tokens: bool,
    /// The provider browsers sign in with here (a `[[oidc.providers]]` id): its sessions
    /// only; `None` for any provider's.
    pub provider: Option<String>,
}

/// A validated route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Decoded; for a subtree, without its trailing `/` (except the root, `/`).
    path: String,
    shape: Shape,
    /// Empty for all methods. Never lists a method twice.
    methods: Vec<Method>,
    host: Option<HostKey>,
    access: Access,
    token_kind: TokenKind,
    client_cert: CertRequirements,
    require_bound_tokens: bool,
    provider: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Exact,
    Subtree,
}

impl Route {
    /// What the route demands.
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// Which bearer tokens the route takes.
    pub fn token_kind(&self) -> TokenKind {
        self.token_kind
    }

    /// What the route asks of the client certificate.
    pub fn client_cert(&self) -> &CertRequirements {
        &self.client_cert
    }

    /// Whether only sender-constrained bearer tokens are accepted.
    pub fn require_bound_tokens(&self) -> bool {
        self.require_bound_tokens
    }

    /// The provider whose sessions this route takes, when it names one.
    pub fn provider(&self) -> Option<&str> {
        self.provider.as_deref()
    }

    /// The route's path, decoded; a subtree's without the trailing `/` (the root stays `/`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the route matches its path only, rather than the subtree below it.
    pub fn is_exact(&self) -> bool {
        self.shape == Shape::Exact
    }

    /// The methods the route applies to; empty for all.
    pub fn methods(&self) -> &[Method] {
        &self.methods
    }

    fn from_spec(spec: RouteSpec) -> Result<Route, String> {
        let normal =
            normalise(spec.path.as_bytes()).map_err(|e| format!("path {:?}: {e}", spec.path))?;
        let shape = if spec.exact {
            Shape::Exact
        } else {
            Shape::Subtree
        };
        let mut path = String::from(normal.as_str());
        if shape == Shape::Subtree && path.len() > 1 && path.ends_with('/') {
            path.pop();
        }
        for (i, m) in spec.methods.iter().enumerate() {
            if spec.methods[..i].contains(m) {
                return Err(format!("method {m} is listed twice"));
            }
        }
        let host = spec.host.as_deref().map(parse_route_host).transpose()?;
        if spec.access == Access::Public && spec.token_kind != TokenKind::Any {
            return Err("token_kind applies only to routes that require authentication".into());
        }
        if spec.access == Access::Public && spec.require_bound_tokens {
            return Err(
                "require_bound_tokens applies only to routes that require authentication".into(),
            );
        }
        if spec.access == Access::Public && !spec.client_cert.is_empty() {
            return Err(
                "client certificate rules apply only to routes that require authentication".into(),
            );
        }
        Ok(Route {
            path,
            shape,
            methods: spec.methods,
            host,
            access: spec.access,
            token_kind: spec.token_kind,
            client_cert: spec.client_cert,
            require_bound_tokens: spec.require_bound_tokens,
            provider: spec.provider,
        })
    }

    /// Ordering key, greatest first: longer path, then exact, then with a host, then with
    /// methods.
    fn specificity(&self) -> (usize, bool, bool, bool) {
        (
            self.path.len(),
            self.shape == Shape::Exact,
            self.host.is_some(),
            !self.methods.is_empty(),
        )
    }

    /// `None` (a forward-auth request whose method nobody reported) fits only routes that
    /// name no methods.
    fn fits_method(&self, method: Option<&Method>) -> bool {
        let Some(method) = method else {
            return self.methods.is_empty();
        };
        self.methods.is_empty()
            || self.methods.contains(method)
            || (method == Method::HEAD && self.methods.contains(&Method::GET))
    }

    /// Whether both routes would take a request with `method`, as far as methods go.
    fn methods_overlap(&self, other: &Route) -> bool {
        if self.methods.is_empty() || other.methods.is_empty() {
            // Equal when both are empty; otherwise the one with methods is more specific.
            return self.methods.is_empty() && other.methods.is_empty();
        }
        self.methods.iter().any(|m| other.fits_method(Some(m)))
            || other.methods.iter().any(|m| self.fits_method(Some(m)))
    }

    fn fits_host(&self, host: Option<&Host<'_>>) -> bool {
        match (&self.host, host) {
            (None, _) => true,
            (Some(own), Some(host)) => host.is(own),
            (Some(_), None) => false,
        }
    }

    fn fits_path(&self, path: &str) -> bool {
        match self.shape {
            // `/admin` exact also covers `/admin/`: many frameworks serve the same page.
            Shape::Exact => {
                path == self.path
                    || (self.path != "/" && path.strip_suffix('/') == Some(self.path.as_str()))
            }
            Shape::Subtree => {
                self.path == "/"
                    || (path.starts_with(&self.path)
                        && matches!(path.as_bytes().get(self.path.len()), None | Some(b'/')))
            }
        }
    }
}

/// A `Host` header that names no host, while routes depend on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the Host header is not a host name")]
pub struct BadHost;

/// The configured routes, most specific first.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Validates every spec: path must be a valid normalised path itself (use `normalise`), a
    /// route path "/x/" and "/x" both mean the subtree /x unless exact; host lowercased, no port
    /// or scheme; duplicate (path, exact, methods, host) → error. Err((index, message)).
    ///
    /// Two routes with the same path, shape and host whose method lists overlap are refused as
    /// well (`[GET]` and `[GET, POST]`; `[GET]` and `[HEAD]`): either would fit a `GET`, and
    /// nothing in the configuration says which should win. `index` is then the later one.
    pub fn new(specs: Vec<RouteSpec>) -> Result<RouteTable, (usize, String)> {
        let mut routes: Vec<Route> = Vec::with_capacity(specs.len());
        for (index, spec) in specs.into_iter().enumerate() {
            let route = Route::from_spec(spec).map_err(|why| (index, why))?;
            if let Some(earlier) = routes.iter().position(|r| {
                r.path == route.path
                    && r.shape == route.shape
                    && r.host == route.host
                    && r.methods_overlap(&route)
            }) {
                return Err((
                    index,
                    format!(
                        "same path, exact, host and methods as route {earlier} \
                         (method lists must not overlap)"
                    ),
                ));
            }
            routes.push(route);
        }
        // Stable, and no two routes that could fit one request compare equal (see above), so
        // the first fit below is the only most specific one.
        routes.sort_by_key(|r| std::cmp::Reverse(r.specificity()));
        Ok(RouteTable { routes })
    }

    /// The most specific route for this request, or None (the caller then applies the default:
    /// authenticated, no extra requirements — closed by default).
    ///
    /// Hosts work like virtual servers: when routes name the request's host, only those routes
    /// are considered for it; otherwise only routes without a host. (Ranking a host-specific `/`
    /// against a host-less `/static` by path length would let either one silently override the
    /// other.) `host` is the raw `Host` header value; its port is ignored, and so is a single
    /// trailing dot. A host that cannot be parsed is an error when any route names a host, so
    /// a malformed `Host` can never fall through to weaker host-less rules.
    pub fn lookup(
        &self,
        method: Option<&Method>,
        host: Option<&str>,
        path: &NormalPath,
    ) -> Result<Option<&Route>, BadHost> {
        let parsed = host.and_then(|h| parse_authority(h).ok()).map(|a| a.host);
        if host.is_some() && parsed.is_none() && self.routes.iter().any(|r| r.host.is_some()) {
            return Err(BadHost);
        }
        let virtual_server = self
            .routes
            .iter()
            .any(|r| r.host.is_some() && r.fits_host(parsed.as_ref()));
        let path = path.as_str();
        Ok(self.routes.iter().find(|r| {
            r.host.is_some() == virtual_server
                && r.fits_path(path)
                && r.fits_method(method)
                && r.fits_host(parsed.as_ref())
        }))
    }

    /// The routes, most specific first.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

/// A configured host: a DNS name or IPv4 address, or an IPv6 literal in brackets, in the
/// grammar requests are held to ([`crate::host`]), without a port or a trailing dot.
fn parse_route_host(s: &str) -> Result<HostKey, String> {
    if s.contains("://") {
        return Err(format!("host {s:?}: no scheme, only the host name"));
    }
    if s.ends_with('.') {
        return Err(format!(
            "host {s:?}: empty label (no leading, trailing or double dot)"
        ));
    }
    parse_host(s).map(|h| h.key()).map_err(|e| match e {
        HostError::Port => format!("host {s:?}: no port (IPv6 addresses go in brackets)"),
        HostError::Ipv6 => format!("host {s:?}: not an IPv6 address in brackets"),
        HostError::Characters => format!(
            "host {s:?}: only letters, digits, '-', '_' and '.' are allowed \
             (no path, userinfo, wildcard or non-ASCII; write IDNs as xn--)"
        ),
        HostError::Empty | HostError::TooLong => {
            format!("host {s:?}: must have 1 to 253 characters")
        }
        HostError::EmptyLabel => {
            format!("host {s:?}: empty label (no leading, trailing or double dot)")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::rules::Requirements;

    fn spec(path: &str) -> RouteSpec {
        RouteSpec {
            path: path.to_owned(),
            exact: false,
            methods: Vec::new(),
            host: None,
            access: Access::Authenticated(Requirements::default()),
            token_kind: TokenKind::Any,
            client_cert: CertRequirements::default(),
            require_bound_tokens: false,
            provider: None,
        }
    }

    fn public(path: &str) -> RouteSpec {
        RouteSpec {
            access: Access::Public,
            ..spec(path)
        }
    }

    fn exact(path: &str) -> RouteSpec {
        RouteSpec {
            exact: true,
            ..spec(path)
        }
    }

    fn with_host(mut s: RouteSpec, host: &str) -> RouteSpec {
        s.host = Some(host.to_owned());
        s
    }

    fn with_methods(mut s: RouteSpec, methods: &[Method]) -> RouteSpec {
        s.methods = methods.to_vec();
        s
    }

    fn with_groups(mut s: RouteSpec, groups: &[&str]) -> RouteSpec {
        s.access = Access::Authenticated(Requirements {
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            ..Requirements::default()
        });
        s
    }

    fn table(specs: Vec<RouteSpec>) -> RouteTable {
        match RouteTable::new(specs) {
            Ok(t) => t,
            Err((i, why)) => panic!("route {i}: {why}"),
        }
    }

    fn pick<'t>(
        t: &'t RouteTable,
        method: Method,
        host: Option<&str>,
        path: &str,
    ) -> Option<&'t Route> {
        let path = normalise(path.as_bytes()).expect("valid request path");
        // A malformed host is an error of its own (asserted separately); here it picks nothing.
        t.lookup(Some(&method), host, &path).ok().flatten()
    }

    fn pick_path(t: &RouteTable, path: &str) -> Option<String> {
        pick(t, Method::GET, None, path).map(|r| r.path().to_owned())
    }

    #[test]
    fn subtree_matches_at_a_segment_boundary() {
        for route in ["/public", "/public/"] {
            let t = table(vec![public(route)]);
            assert_eq!(t.routes()[0].path(), "/public");
            for hit in ["/public", "/public/", "/public/x", "/public/x/y.css"] {
                assert!(
                    pick(&t, Method::GET, None, hit).is_some(),
                    "{route} vs {hit}"
                );
            }
            for miss in ["/publicity", "/public.html", "/PUBLIC/x", "/", "/x/public"] {
                assert!(
                    pick(&t, Method::GET, None, miss).is_none(),
                    "{route} vs {miss}"
                );
            }
        }
    }

    #[test]
    fn root_subtree_matches_everything_and_root_exact_only_root() {
        let t = table(vec![public("/")]);
        assert!(pick(&t, Method::GET, None, "/").is_some());
        assert!(pick(&t, Method::GET, None, "/anything/at/all").is_some());
        let t = table(vec![exact("/")]);
        assert!(pick(&t, Method::GET, None, "/").is_some());
        assert!(pick(&t, Method::GET, None, "/x").is_none());
    }

    #[test]
    fn exact_matches_the_path_only() {
        let t = table(vec![exact("/health")]);
        assert!(pick(&t, Method::GET, None, "/health").is_some());
        // The trailing-slash twin is the same page in many frameworks.
        assert!(pick(&t, Method::GET, None, "/health/").is_some());
        for miss in ["/health/x", "/healthz", "/Health"] {
            assert!(pick(&t, Method::GET, None, miss).is_none(), "{miss}");
        }
        let t = table(vec![exact("/dir/")]);
        assert!(pick(&t, Method::GET, None, "/dir/").is_some());
        assert!(pick(&t, Method::GET, None, "/dir").is_none());
    }

    #[test]
    fn route_paths_are_decoded_like_requests() {
        let t = table(vec![public("/files/caf%C3%A9/")]);
        assert_eq!(t.routes()[0].path(), "/files/café");
        assert!(pick(&t, Method::GET, None, "/files/caf%c3%a9/menu").is_some());
        let t = table(vec![exact("/admin")]);
        assert!(pick(&t, Method::GET, None, "/%61dmin").is_some());
    }

    #[test]
    fn longest_path_wins() {
        let t = table(vec![
            public("/public/"),
            with_groups(spec("/public/admin"), &["sre"]),
        ]);
        let chosen = pick(&t, Method::GET, None, "/public/admin/x").expect("a route");
        assert_eq!(chosen.path(), "/public/admin");
        assert!(matches!(chosen.access(), Access::Authenticated(r) if r.groups == ["sre"]));
        assert_eq!(
            pick_path(&t, "/public/admin").as_deref(),
            Some("/public/admin")
        );
        assert_eq!(
            pick_path(&t, "/public/administrator").as_deref(),
            Some("/public")
        );
        assert_eq!(pick_path(&t, "/public/x/admin").as_deref(), Some("/public"));
        assert_eq!(pick_path(&t, "/admin"), None);
    }

    #[test]
    fn exact_beats_subtree_on_a_tie() {
        let t = table(vec![
            spec("/api"),
            RouteSpec {
                exact: true,
                ..public("/api")
            },
        ]);
        let root = pick(&t, Method::GET, None, "/api").expect("a route");
        assert!(root.is_exact());
        assert_eq!(root.access(), &Access::Public);
        let below = pick(&t, Method::GET, None, "/api/x").expect("a route");
        assert!(!below.is_exact());
    }

    #[test]
    fn host_beats_no_host_and_is_compared_loosely() {
        let t = table(vec![
            public("/"),
            with_groups(with_host(spec("/"), "Admin.Example.COM"), &["sre"]),
        ]);
        let grouped = |host| {
            matches!(
                pick(&t, Method::GET, host, "/x").map(Route::access),
                Some(Access::Authenticated(_))
            )
        };
        for same in [
            "admin.example.com",
            "ADMIN.example.com",
            "admin.example.com:8443",
            "admin.example.com.",
            "admin.example.com.:80",
        ] {
            assert!(grouped(Some(same)), "{same}");
        }
        for other in [
            "example.com",
            "evil-admin.example.com",
            "admin.example.com.evil",
            "admin.example.com:x",
            "admin.example.com:1:2",
            "admin.example.com:",
            "",
        ] {
            assert!(!grouped(Some(other)), "{other}");
        }
        assert!(!grouped(None));
        // With host-specific routes around, a Host that names no host is refused outright.
        let path = normalise(b"/x").expect("path");
        for bad in ["admin.example.com:x", "admin.example.com:", "", "[::1"] {
            assert_eq!(
                t.lookup(Some(&Method::GET), Some(bad), &path).err(),
                Some(BadHost),
                "{bad}"
            );
        }
    }

    #[test]
    fn ipv6_hosts_compare_as_addresses() {
        let t = table(vec![with_host(public("/"), "[::1]")]);
        for same in ["[::1]", "[::1]:8080", "[0:0::1]:80", "[0:0:0:0:0:0:0:1]"] {
            assert!(pick(&t, Method::GET, Some(same), "/").is_some(), "{same}");
        }
        for other in [
            "[::2]",
            "::1",
            "[::1]8080",
            "[::1",
            "localhost",
            "[::1]:123456",
        ] {
            assert!(pick(&t, Method::GET, Some(other), "/").is_none(), "{other}");
        }
    }

    #[test]
    fn methods_beat_no_methods_and_skip_others() {
        let t = table(vec![
            spec("/api"),
            with_methods(public("/api"), &[Method::GET]),
        ]);
        let access = |m| pick(&t, m, None, "/api/items").map(Route::access).cloned();
        assert_eq!(access(Method::GET), Some(Access::Public));
        assert_eq!(access(Method::HEAD), Some(Access::Public));
        assert!(matches!(
            access(Method::POST),
            Some(Access::Authenticated(_))
        ));
        assert!(matches!(
            access(Method::OPTIONS),
            Some(Access::Authenticated(_))
        ));

        let only_post = table(vec![with_methods(public("/hook"), &[Method::POST])]);
        assert!(pick(&only_post, Method::GET, None, "/hook").is_none());
        assert!(pick(&only_post, Method::HEAD, None, "/hook").is_none());
    }

    #[test]
    fn non_fitting_host_or_method_falls_through_to_shorter_routes() {
        let t = table(vec![
            spec("/"),
            with_host(with_methods(public("/a/b"), &[Method::GET]), "a.example"),
            public("/a"),
        ]);
        assert_eq!(
            pick(&t, Method::GET, Some("a.example"), "/a/b/c").map(Route::path),
            Some("/a/b")
        );
        // a.example has routes of its own, so host-less routes do not apply to it: a POST
        // fits none of them and gets the (closed) default.
        assert_eq!(
            pick(&t, Method::POST, Some("a.example"), "/a/b/c").map(Route::path),
            None
        );
        assert_eq!(
            pick(&t, Method::GET, Some("b.example"), "/a/b/c").map(Route::path),
            Some("/a")
        );
        assert_eq!(
            pick(&t, Method::GET, None, "/z").map(Route::path),
            Some("/")
        );
    }

    #[test]
    fn ranking_order() {
        let t = table(vec![
            spec("/x"),
            with_methods(spec("/x"), &[Method::GET]),
            with_host(spec("/x"), "h"),
            with_methods(with_host(spec("/x"), "h"), &[Method::GET]),
            exact("/x"),
            spec("/x/y"),
        ]);
        let keys: Vec<_> = t
            .routes()
            .iter()
            .map(|r| {
                (
                    r.path(),
                    r.is_exact(),
                    r.host.is_some(),
                    !r.methods().is_empty(),
                )
            })
            .collect();
        assert_eq!(
            keys,
            [
                ("/x/y", false, false, false),
                ("/x", true, false, false),
                ("/x", false, true, true),
                ("/x", false, true, false),
                ("/x", false, false, true),
                ("/x", false, false, false),
            ]
        );
        // A host route without methods still beats a method route without a host.
        assert!(pick(&t, Method::POST, Some("h"), "/x/z").is_some_and(|r| r.host.is_some()));
        assert!(pick(&t, Method::GET, Some("h"), "/x/z")
            .is_some_and(|r| r.host.is_some() && !r.methods().is_empty()));
    }

    #[test]
    fn duplicates_and_overlaps_are_refused() {
        let refused = |specs: Vec<RouteSpec>| RouteTable::new(specs).err().map(|(i, _)| i);
        assert_eq!(refused(vec![spec("/a"), spec("/a/")]), Some(1));
        assert_eq!(refused(vec![spec("/a"), spec("/%61")]), Some(1));
        assert_eq!(
            refused(vec![exact("/a"), public("/b"), exact("/a")]),
            Some(2)
        );
        assert_eq!(
            refused(vec![
                with_host(spec("/"), "h.example"),
                with_host(spec("/"), "H.Example")
            ]),
            Some(1)
        );
        assert_eq!(
            refused(vec![
                with_host(spec("/"), "[::1]"),
                with_host(spec("/"), "[0::1]")
            ]),
            Some(1)
        );
        assert_eq!(
            refused(vec![
                with_methods(spec("/a"), &[Method::GET, Method::POST]),
                with_methods(spec("/a"), &[Method::POST, Method::GET]),
            ]),
            Some(1)
        );
        assert_eq!(
            refused(vec![
                with_methods(spec("/a"), &[Method::GET]),
                with_methods(spec("/a"), &[Method::GET, Method::POST]),
            ]),
            Some(1)
        );
        assert_eq!(
            refused(vec![
                with_methods(spec("/a"), &[Method::HEAD]),
                with_methods(spec("/a"), &[Method::GET]),
            ]),
            Some(1)
        );
        // Not ambiguous: different shape, host or methods, or methods vs none.
        assert_eq!(refused(vec![spec("/a"), exact("/a")]), None);
        assert_eq!(refused(vec![spec("/a"), with_host(spec("/a"), "h")]), None);
        assert_eq!(
            refused(vec![spec("/a"), with_methods(spec("/a"), &[Method::GET])]),
            None
        );
        assert_eq!(
            refused(vec![
                with_methods(spec("/a"), &[Method::GET]),
                with_methods(spec("/a"), &[Method::POST]),
            ]),
            None
        );
    }

    #[test]
    fn invalid_specs_are_refused_with_their_index() {
        let bad_paths = [
            "",
            "x",
            "/a//b",
            "/a/../b",
            "/a%2fb",
            "/a;b",
            "/a?b",
            "/a b",
            "/caf\u{e9}",
        ];
        for path in bad_paths {
            let err = RouteTable::new(vec![spec("/ok"), spec(path)]).err();
            assert!(matches!(err, Some((1, _))), "{path:?}: {err:?}");
        }
        let bad_hosts = [
            "",
            "https://h.example",
            "h.example:443",
            "::1",
            "[::1]:80",
            "[nope]",
            "h.example.",
            ".h.example",
            "a..b",
            "*.example",
            "user@h.example",
            "h.example/x",
            "h\u{e9}.example",
        ];
        for host in bad_hosts {
            let err = RouteTable::new(vec![with_host(spec("/"), host)]).err();
            assert!(matches!(err, Some((0, _))), "{host:?}: {err:?}");
        }
        let twice = with_methods(spec("/"), &[Method::GET, Method::GET]);
        assert!(RouteTable::new(vec![twice]).is_err());
        let public_id_only = RouteSpec {
            token_kind: TokenKind::Id,
            ..public("/")
        };
        assert!(RouteTable::new(vec![public_id_only]).is_err());
    }

    #[test]
    fn errors_name_the_problem() {
        let (i, why) = RouteTable::new(vec![spec("/a/../b")]).expect_err("refused");
        assert_eq!(i, 0);
        assert!(why.contains("dot segment"), "{why}");
    }

    #[test]
    fn no_routes_means_no_match() {
        let t = table(Vec::new());
        assert!(pick(&t, Method::GET, Some("h"), "/").is_none());
    }
}
