//! Prints the `Cookie` header of a session signed in as `USER`, sealed with the session
//! secrets of a portcullis configuration: what `bench/instructions.sh` sends to count what a
//! session cookie costs per request, without a browser and an identity provider.
//!
//!   cargo run --release --example mint_session -- CONFIG [USER]
//!
//! A benchmark tool, not part of portcullis: anyone who holds the session secret can seal a
//! session, which is why the secret is one.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis::clock::UnixTime;
use portcullis::config::Config;
use portcullis::session::{CookieStore, Identity, SessionData};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(config) = args.get(1) else {
        eprintln!("usage: mint_session CONFIG [USER]");
        return ExitCode::from(2);
    };
    let user = args.get(2).map_or("alice", String::as_str);
    match mint(Path::new(config), user) {
        Ok(cookie) => {
            println!("{cookie}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mint_session: {e}");
            ExitCode::FAILURE
        }
    }
}

fn mint(config: &Path, user: &str) -> Result<String, String> {
    let config = Config::load(config).map_err(|e| e.to_string())?;
    let session = config
        .session
        .as_ref()
        .ok_or("the configuration has no [session]")?;
    let store = CookieStore::new(session).map_err(|e| e.to_string())?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?;
    let now = UnixTime::from_secs(now.as_secs());
    // What a sign-in at a provider without refresh tokens keeps: the usual identity claims.
    let data = SessionData {
        identity: Identity {
            user: Some(user.to_string()),
            email: Some(format!("{user}@example.com")),
            groups: vec!["staff".to_string()],
            preferred_username: Some(user.to_string()),
            provider: None,
            issuer: None,
        },
        created_at: now.secs(),
        expires_at: now.plus(Duration::from_secs(3600)).secs(),
        tokens_expire_at: None,
        refresh_token: None,
        id_token: None,
        access_token: None,
        sub: Some(format!("{user}-sub")),
        sid: None,
        id: Some(format!("bench-{user}")),
    };
    let set_cookies = store.save(&data, &[], now);
    let pairs: Vec<&str> = set_cookies
        .iter()
        .filter_map(|c| c.as_str().split(';').next())
        .filter(|pair| !pair.ends_with('='))
        .collect();
    if pairs.is_empty() {
        return Err("the session could not be sealed".into());
    }
    Ok(pairs.join("; "))
}
