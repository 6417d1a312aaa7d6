//! `portcullis demo`: the development provider, the echo upstream and the proxy, in one
//! process on loopback, configured through the same TOML path as a real deployment.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::Context;

use super::{DevIdp, DevIdpConfig, EchoServer};
use crate::config::Config;

/// Starts everything and serves until the process is stopped.
pub fn run(listen: SocketAddr) -> anyhow::Result<Infallible> {
    let public = format!("http://{listen}");
    let idp_config = DevIdpConfig {
        redirect_uris: vec![format!("{public}/oauth2/callback")],
        post_logout_redirect_uris: vec![format!("{public}/")],
        ..DevIdpConfig::default()
    };
    let (client_id, client_secret) = (
        idp_config.client_id.clone(),
        idp_config.client_secret.clone(),
    );
    let machine = idp_config.service_clients.first().cloned();
    let api_audience = machine
        .as_ref()
        .map_or_else(|| "portcullis-api".to_string(), |m| m.audience.clone());
    // The provider and the upstream run on their own runtime, beside pingora's.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("demo-services".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(Err(anyhow::Error::from(e)));
                    return;
                }
            };
            runtime.block_on(async move {
                let started = async {
                    let idp_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                    let echo_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                    let idp = DevIdp::start(idp_listener, idp_config).await?;
                    let echo = EchoServer::start(echo_listener).await?;
                    Ok::<_, std::io::Error>((idp, echo))
                };
                match started.await {
                    Ok((idp, echo)) => {
                        let _ = tx.send(Ok((idp.issuer().to_string(), echo.addr())));
                        // Serve for as long as the process lives.
                        std::future::pending::<()>().await;
                        drop((idp, echo));
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.into()));
                    }
                }
            });
        })
        .context("cannot start the demo services")?;
    let (issuer, echo) = rx.recv().context("the demo services did not start")??;

    let toml = format!(
        r#"
[server]
listen = "{listen}"
[upstream]
url = "http://{echo}"
[oidc]
issuer = "{issuer}"
client_id = "{client_id}"
client_secret = "{client_secret}"
redirect_url = "{public}/oauth2/callback"
[session]
secrets = ["{secret}"]
secure = false      # the demo is plain http on loopback
lifetime = "8h"
[bearer]
audiences = ["{api_audience}"]
"#,
        secret = crate::config::generate_secret(),
    );
    let config = Config::parse(&toml, "<demo>", &|_| None)?;
    let server = crate::server::build(config, None)?;

    let scripts = match &machine {
        Some(m) => format!(
            "  a script  TOKEN=$(curl -s -u {id}:{secret} -d grant_type=client_credentials \\\n            \
             {issuer}/token | sed 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/')\n            \
             curl -s -H \"Authorization: Bearer $TOKEN\" {public}/api\n\n",
            id = m.client_id,
            secret = m.client_secret,
        ),
        None => String::new(),
    };
    println!(
        "\n  portcullis demo — everything below runs in this process, on loopback only\n\n  \
         open      {public}/\n  \
         log in    alice / alice   (groups: sre, dev)\n            \
         bob   / bob     (group: dev)\n\n{scripts}  \
         identity  {issuer}   DEVELOPMENT PROVIDER: never use it in production\n  \
         upstream  http://{echo}   (echoes the headers it receives)\n\n  \
         Ctrl-C to stop.\n"
    );
    server.run_forever()
}
