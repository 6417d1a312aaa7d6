//! The dev IdP's HTML: a login form, an error page and a signed-out page.
//!
//! Every reflected value goes through [`escape_html`]; the pages carry no script, and the
//! response headers (see `demo::http::html`) forbid scripts anyway.

use super::DevUser;
use crate::demo::http::escape_html;

const STYLE: &str = r#"
body { font-family: system-ui, sans-serif; background: #f4f4f6; color: #222; margin: 0; }
.banner { background: #b00020; color: #fff; padding: 0.8rem 1rem; text-align: center; font-weight: bold; }
main { max-width: 24rem; margin: 2.5rem auto; background: #fff; padding: 1.5rem 2rem; border-radius: 8px; box-shadow: 0 1px 4px rgba(0,0,0,0.15); }
h1 { font-size: 1.3rem; margin-top: 0; }
label { display: block; margin: 0.8rem 0 0.3rem; font-weight: 600; }
input[type=text], input[type=password] { width: 100%; box-sizing: border-box; padding: 0.5rem; font-size: 1rem; border: 1px solid #aaa; border-radius: 4px; }
button { margin-top: 1.2rem; width: 100%; padding: 0.6rem; font-size: 1rem; background: #1f5fbf; color: #fff; border: 0; border-radius: 4px; cursor: pointer; }
.error { background: #fde7ea; border: 1px solid #e6a1ab; color: #8a0015; padding: 0.5rem 0.7rem; border-radius: 4px; }
.hint { color: #555; font-size: 0.9rem; margin-top: 1.2rem; }
code { background: #f0f0f0; padding: 0 0.25rem; border-radius: 3px; }
"#;

const BANNER: &str =
    "Development identity provider — for <code>portcullis demo</code> and tests only. \
                      Never use in production.";

fn page(title: &str, content: &str) -> String {
    let body = format!(
        "<div class=\"banner\" role=\"alert\">{BANNER}</div>\n<main>\n{content}\n</main>\n"
    );
    crate::demo::http::document(title, STYLE, &body)
}

/// The login form. `hidden` are the authorization request parameters, posted back verbatim so
/// the POST is validated exactly like the GET was.
pub(super) fn login(
    client_id: &str,
    hidden: &[(&str, &str)],
    users: &[DevUser],
    username: &str,
    error: Option<&str>,
) -> String {
    let mut fields = String::new();
    for (name, value) in hidden {
        fields.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
            escape_html(name),
            escape_html(value)
        ));
    }
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>\n", escape_html(e)))
        .unwrap_or_default();
    // The configured users, passwords included: this IdP exists to be clicked through.
    let logins: Vec<String> = users
        .iter()
        .map(|u| {
            format!(
                "<code>{}</code> / <code>{}</code> ({})",
                escape_html(&u.username),
                escape_html(&u.password),
                escape_html(&u.groups.join(", "))
            )
        })
        .collect();
    let content = format!(
        r#"<h1>Sign in</h1>
<p>to continue to <code>{client}</code></p>
{error}<form method="post" action="authorize">
{fields}<label for="username">Username</label>
<input type="text" id="username" name="username" value="{username}" autocomplete="username" autofocus required>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
<p class="hint">Demo logins: {logins}.</p>"#,
        client = escape_html(client_id),
        username = escape_html(username),
        logins = logins.join("; "),
    );
    page("Sign in — development IdP", &content)
}

/// A request the IdP refuses without redirecting, because the redirect target is not trusted.
pub(super) fn error(message: &str) -> String {
    let content = format!(
        "<h1>Cannot continue</h1>\n<p class=\"error\">{}</p>\n<p class=\"hint\">The request was \
         not sent back to the application because its client or redirect URI is not registered \
         here.</p>",
        escape_html(message)
    );
    page("Error — development IdP", &content)
}

/// Shown after logout when there is no (allowed) place to send the user back to.
pub(super) fn signed_out() -> String {
    page(
        "Signed out — development IdP",
        "<h1>You are signed out</h1>\n<p>You can close this window.</p>",
    )
}
