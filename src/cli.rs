//! The command line: argument parsing and the commands. Everything else lives in the
//! library; this file only decides what to run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "An authenticating reverse proxy: OpenID Connect login in front of an application that has none."
)]
/// The command line.
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with a configuration file.
    Run {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate a configuration file and reach the identity provider; exit 1 with the reason
    /// if anything is wrong.
    Check {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Only validate the file (and the secrets and key files it names); do not contact the
        /// identity provider. For CI pipelines that lint configurations.
        #[arg(long)]
        offline: bool,
    },
    /// Read a token on stdin and explain it: which issuer and key it matched, each check
    /// passed or failed, and what a request with it would get. Exit 0 when that request would
    /// go through, 1 when it would be refused.
    ExplainToken {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// The request's path.
        #[arg(long, default_value = "/")]
        path: String,
        /// The request's method.
        #[arg(long, default_value = "GET")]
        method: String,
        /// The host the request is for (routes may match on it).
        #[arg(long, default_value = "localhost")]
        host: String,
    },
    /// Server-side sessions (`session.store = "redis"`).
    Sessions {
        #[command(subcommand)]
        action: SessionsAction,
    },
    /// Turn another proxy's configuration into a portcullis configuration (on stdout); every
    /// option that could not be carried over is listed on stderr.
    Import {
        #[command(subcommand)]
        from: ImportFrom,
    },
    /// Sign in to an application portcullis protects, for scripts: shows a code to approve at
    /// the identity provider in any browser (device sign-in, RFC 8628), then keeps the session
    /// under ~/.config/portcullis (mode 0600) for `portcullis curl` and `portcullis token`.
    Login {
        /// The application's URL (its origin is what the session is for).
        url: String,
        /// Which identity provider, when portcullis has several (an `[[oidc.providers]]` id).
        #[arg(long)]
        provider: Option<String>,
    },
    /// Send a request with the session `portcullis login` kept (refreshed on the way when due);
    /// prints the response body. Exits 2 when a new login is needed.
    Curl {
        url: String,
        /// The method.
        #[arg(short = 'X', long = "request", default_value = "GET")]
        method: String,
        /// The request body (`@FILE` reads a file, `@-` standard input).
        #[arg(short = 'd', long = "data")]
        data: Option<String>,
        /// A request header, `Name: value` (repeatable).
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// Print the status line and response headers first.
        #[arg(short = 'i', long = "include")]
        include: bool,
    },
    /// Print the `Cookie:` header of the session `portcullis login` kept, refreshed if due, for
    /// other tools (`curl -H "$(portcullis token URL)" URL`). Exits 2 when a new login is needed.
    Token { url: String },
    /// Print a fresh random session secret for `session.secrets`.
    Secret,
    /// Start a self-contained demo on loopback: a development identity provider, an echo
    /// upstream and the proxy in front of it.
    Demo {
        /// Where the proxy listens.
        #[arg(long, default_value = "127.0.0.1:4180")]
        listen: std::net::SocketAddr,
    },
}

#[derive(Subcommand)]
enum ImportFrom {
    /// oauth2-proxy: its config file(s) and/or its command-line flags, as you run it
    /// (`portcullis import oauth2-proxy oauth2-proxy.cfg --upstream=http://127.0.0.1:8080`).
    #[command(name = "oauth2-proxy")]
    Oauth2Proxy {
        /// Config files and `--flags`, in oauth2-proxy's own spelling.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum SessionsAction {
    /// End sessions in Redis at once, on every replica: every session of a user (`--sub`, the
    /// provider's subject) or of one login at the provider (`--sid`).
    Revoke {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// The provider's `sub` of the user.
        #[arg(long, required_unless_present = "sid")]
        sub: Option<String>,
        /// The provider's session id (`sid`).
        #[arg(long)]
        sid: Option<String>,
        /// Whose `sub` or `sid` it is (a `[[oidc.providers]]` id): needed when there are
        /// several, since the same `sub` at two providers is two users.
        #[arg(long, value_name = "ID")]
        provider: Option<String>,
    },
}

/// Runs the command the arguments name.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config: path } => match Config::load(&path) {
            Ok(config) => {
                crate::logging::init(&config.logging.level, config.logging.format);
                tracing::info!(config = %config.source, summary = %config.summary(), "starting");
                match crate::server::build(config, Some(path)) {
                    Ok(server) => server.run_forever(),
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::from(1)
                    }
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        },
        Command::Check { config, offline } => check(&config, offline),
        Command::Login { url, provider } => remote(|| async move {
            let url = parse_url(&url)?;
            let saved =
                crate::remote::login(&url, provider.as_deref(), |text| eprintln!("{text}")).await?;
            let until = saved.expires_at;
            eprintln!(
                "signed in; the session for {} lasts until {} (Unix time)",
                crate::remote::origin(&url)?,
                until
            );
            Ok(())
        }),
        Command::Curl {
            url,
            method,
            data,
            headers,
            include,
        } => remote(|| async move {
            let request = crate::remote::Request {
                method: http::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).map_err(
                    |_| crate::remote::Failure::Other(format!("{method}: not a method")),
                )?,
                url: parse_url(&url)?,
                headers: headers
                    .iter()
                    .map(|h| match h.split_once(':') {
                        Some((n, v)) => Ok((n.trim().to_string(), v.trim().to_string())),
                        None => Err(crate::remote::Failure::Other(format!(
                            "{h}: not `Name: value`"
                        ))),
                    })
                    .collect::<Result<_, _>>()?,
                body: data.map(|d| read_data(&d)).transpose()?,
            };
            let response = crate::remote::send(request).await?;
            if include {
                println!("{:?} {}", response.version(), response.status());
                for (name, value) in response.headers() {
                    println!("{name}: {}", value.to_str().unwrap_or("(not text)"));
                }
                println!();
            }
            let body = response
                .bytes()
                .await
                .map_err(|e| crate::remote::Failure::Other(e.to_string()))?;
            use std::io::Write;
            let _ = std::io::stdout().write_all(&body);
            Ok(())
        }),
        Command::Token { url } => remote(|| async move {
            let cookie = crate::remote::token(&parse_url(&url)?).await?;
            println!("Cookie: {cookie}");
            Ok(())
        }),
        Command::ExplainToken {
            config,
            path,
            method,
            host,
        } => explain_token(
            &config,
            &crate::explain::Request {
                method: &method,
                host: &host,
                path: &path,
            },
        ),
        Command::Sessions {
            action:
                SessionsAction::Revoke {
                    config,
                    sub,
                    sid,
                    provider,
                },
        } => revoke(&config, provider.as_deref(), sub.as_deref(), sid.as_deref()),
        Command::Import {
            from: ImportFrom::Oauth2Proxy { args },
        } => match crate::import::oauth2_proxy(&args) {
            Ok(imported) => {
                print!("{}", imported.toml);
                if !imported.left_out.is_empty() {
                    eprintln!("not carried over ({}):", imported.left_out.len());
                    for line in &imported.left_out {
                        eprintln!("  - {line}");
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        },
        Command::Secret => {
            println!("{}", crate::config::generate_secret());
            ExitCode::SUCCESS
        }
        Command::Demo { listen } => demo(listen),
    }
}

#[cfg(feature = "demo")]
fn demo(listen: std::net::SocketAddr) -> ExitCode {
    crate::logging::init("info", crate::config::LogFormat::Text);
    match crate::demo::launch::run(listen) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(not(feature = "demo"))]
fn demo(_listen: std::net::SocketAddr) -> ExitCode {
    eprintln!("error: this portcullis was built without the `demo` feature");
    ExitCode::from(2)
}

fn explain_token(path: &std::path::Path, request: &crate::explain::Request<'_>) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut token = String::new();
    if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut token) {
        eprintln!("error: cannot read the token from stdin: {e}");
        return ExitCode::from(2);
    }
    let runtime = match runtime(2) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(crate::explain::explain(config, &token, request)) {
        Ok(report) => {
            print!("{}", report.text);
            if report.allowed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn revoke(
    path: &std::path::Path,
    provider: Option<&str>,
    sub: Option<&str>,
    sid: Option<&str>,
) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime(2) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(crate::session::redis_store::revoke(
        &config, provider, sub, sid,
    )) {
        Ok(Some(count)) => {
            println!("ended {count} session(s)");
            ExitCode::SUCCESS
        }
        Ok(None) => {
            println!("recorded: every replica refuses those sessions from now on");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// A runtime for one command; on failure, says why and exits with `failure`.
fn runtime(failure: u8) -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start a runtime: {e}");
            ExitCode::from(failure)
        })
}

/// Runs a `portcullis login`/`curl`/`token` command: exit 2 (with how to sign in again) when
/// a new login is needed, 1 on any other failure.
fn remote<F, Fut>(command: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), crate::remote::Failure>>,
{
    let runtime = match runtime(1) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(command()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ crate::remote::Failure::LoginNeeded(_)) => {
            eprintln!("portcullis: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("portcullis: {e}");
            ExitCode::from(1)
        }
    }
}

fn parse_url(text: &str) -> Result<url::Url, crate::remote::Failure> {
    url::Url::parse(text).map_err(|e| crate::remote::Failure::Other(format!("{text}: {e}")))
}

/// curl's `-d`: the text itself, `@FILE`, or `@-` for standard input.
fn read_data(d: &str) -> Result<Vec<u8>, crate::remote::Failure> {
    let fail = |e: std::io::Error| crate::remote::Failure::Other(format!("{d}: {e}"));
    match d.strip_prefix('@') {
        Some("-") => {
            use std::io::Read;
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).map_err(fail)?;
            Ok(buf)
        }
        Some(path) => std::fs::read(path).map_err(fail),
        None => Ok(d.as_bytes().to_vec()),
    }
}

fn check(path: &std::path::Path, offline: bool) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if offline {
        println!("ok: {} (offline: provider not contacted)", config.summary());
        return ExitCode::SUCCESS;
    }
    let Some(oidc) = &config.oidc else {
        println!(
            "ok: {} (no [oidc]: no provider to contact)",
            config.summary()
        );
        return ExitCode::SUCCESS;
    };
    crate::jwt::provider::install();
    let runtime = match runtime(1) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let mut lines = Vec::new();
    for provider in oidc.iter() {
        let table = match oidc.len() {
            1 => "oidc".to_string(),
            _ => format!("provider {}", provider.id),
        };
        match runtime.block_on(probe(provider)) {
            Ok((meta, keys)) if keys > 0 => lines.push(format!(
                "{table}: {keys} signing key(s), sign-out at provider: {}",
                if meta.end_session_endpoint.is_some() {
                    "yes"
                } else {
                    "no"
                }
            )),
            Ok(_) => {
                eprintln!(
                    "error: {}: the provider's JWKS has no usable signing key",
                    provider.issuer
                );
                return ExitCode::from(1);
            }
            Err(e) => {
                eprintln!("error: {}: {table}.issuer: {e}", config.source);
                return ExitCode::from(1);
            }
        }
    }
    let providers = match lines.as_slice() {
        [one] => one.replacen("oidc: ", "provider: ", 1),
        _ => lines.join("; "),
    };
    println!("ok: {}; {providers}", config.summary());
    ExitCode::SUCCESS
}

/// Discovery and keys of one provider, as the proxy will load them.
async fn probe(
    oidc: &crate::config::Oidc,
) -> Result<(crate::oidc::discovery::Metadata, usize), crate::oidc::discovery::FetchError> {
    use crate::oidc::discovery::{self, FetchError};
    let http = discovery::provider_client(oidc).map_err(|e| FetchError::Invalid {
        url: discovery::discovery_url(&oidc.issuer),
        reason: format!("cannot build the HTTP client: {e}"),
    })?;
    let meta = discovery::fetch_metadata(&http, &oidc.issuer).await?;
    meta.check_client_auth(&oidc.client_auth)
        .map_err(|reason| FetchError::Invalid {
            url: discovery::discovery_url(&oidc.issuer),
            reason,
        })?;
    let jwks = discovery::fetch_jwks(&http, &meta.jwks_uri).await?;
    let (keys, _) = crate::jwt::keys::KeySet::from_jwks(&jwks);
    Ok((meta, keys.len()))
}
