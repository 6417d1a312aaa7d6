//! What Envoy is told: an allowed request's changes (the identity headers to set, the client
//! copies and our cookies to remove, the cookies to set on the response), or the whole answer
//! to send the client instead.

use super::{Changes, Checked};
use crate::respond::{GrpcStatus, Reply};
use crate::session::chunks::SetCookie;
use envoy_types::ext_authz::v3::pb::{
    CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue, HeaderValueOption,
    HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::google::rpc;

/// `google.rpc.Code.OK`.
const OK: i32 = 0;

fn header(name: &str, value: &str, action: HeaderAppendAction) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: name.to_string(),
            value: value.to_string(),
            ..HeaderValue::default()
        }),
        append_action: action as i32,
        // An empty value is still a value (the client's copy must not survive).
        keep_empty_value: true,
        ..HeaderValueOption::default()
    }
}

/// What Envoy is told of `checked`.
pub(super) fn of(checked: Checked) -> CheckResponse {
    match checked {
        Checked::Allowed {
            changes,
            set_cookies,
        } => allow(changes, set_cookies),
        Checked::Refused(reply) => deny(reply),
    }
}

/// Lets the request through with `changes`, setting `set_cookies` on the response.
fn allow(changes: Changes, set_cookies: Vec<SetCookie>) -> CheckResponse {
    let mut seen: Vec<&http::HeaderName> = Vec::new();
    let headers = changes
        .set
        .iter()
        .filter_map(|(name, value)| {
            // The first value of a name replaces the client's; any further one joins it.
            let action = match seen.contains(&name) {
                true => HeaderAppendAction::AppendIfExistsOrAdd,
                false => HeaderAppendAction::OverwriteIfExistsOrAdd,
            };
            seen.push(name);
            Some(header(name.as_str(), value.to_str().ok()?, action))
        })
        .collect();
    let response_headers_to_add = set_cookies
        .iter()
        .map(|c| {
            header(
                "set-cookie",
                c.as_str(),
                HeaderAppendAction::AppendIfExistsOrAdd,
            )
        })
        .collect();
    CheckResponse {
        status: Some(rpc::Status {
            code: OK,
            ..rpc::Status::default()
        }),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers,
            headers_to_remove: changes
                .remove
                .iter()
                .map(|n| n.as_str().to_string())
                .collect(),
            response_headers_to_add,
            ..OkHttpResponse::default()
        })),
        ..CheckResponse::default()
    }
}

/// Answers the client with `reply` instead (a login redirect, a 401 with its challenge, a
/// 403 page…), exactly as the inline proxy would.
fn deny(reply: Reply) -> CheckResponse {
    let (status, headers, body) = reply.into_parts();
    let code = match status {
        // A login redirect: the caller has yet to sign in.
        300..=399 => GrpcStatus::Unauthenticated,
        _ => GrpcStatus::for_http(status),
    } as i32;
    denied(code, status, headers, body.to_vec())
}

/// A check request that cannot be read one way: refused, never guessed at (and never an RPC
/// error, which Envoy's `failure_mode_allow` would let through).
pub(super) fn malformed(reason: &str) -> CheckResponse {
    let body = format!("bad request: {reason}\n").into_bytes();
    let headers = vec![(
        "content-type".to_string(),
        "text/plain; charset=utf-8".to_string(),
    )];
    denied(GrpcStatus::InvalidArgument as i32, 400, headers, body)
}

fn denied(code: i32, status: u16, headers: Vec<(String, String)>, body: Vec<u8>) -> CheckResponse {
    CheckResponse {
        status: Some(rpc::Status {
            code,
            ..rpc::Status::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(status),
            }),
            headers: headers
                .iter()
                .map(|(n, v)| header(n, v, HeaderAppendAction::AppendIfExistsOrAdd))
                .collect(),
            // Pages portcullis writes are UTF-8.
            body: String::from_utf8_lossy(&body).into_owned(),
        })),
        ..CheckResponse::default()
    }
}
