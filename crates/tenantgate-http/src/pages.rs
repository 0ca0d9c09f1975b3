//! The responses the guard gives instead of the application's: 503 with
//! the facts and the recovery command, 404 for unknown hosts, 400 for
//! malformed ones. HTML for browsers, JSON for `Accept: application/json`.
//! Every value is HTML-escaped; no external assets.

use axum::{
    body::Body,
    http::{header, HeaderValue, StatusCode},
    response::Response,
};
use serde_json::json;

use crate::snapshot::TenantEntry;

/// Escapes text for HTML element content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2433}\
main{max-width:42rem;margin:0 auto;padding:1.5rem}h1{font-size:1.4rem;margin:.2rem 0 1rem}\
.card{background:#fff;border:1px solid #dde1e8;border-radius:.5rem;padding:1rem 1.25rem;margin:1rem 0}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.35rem 1rem;margin:0}dt{color:#5a6478}dd{margin:0;overflow-wrap:anywhere}\
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9rem}pre{background:#1d2433;color:#f6f7f9;padding:.75rem;border-radius:.35rem;overflow-x:auto;white-space:pre-wrap}\
.tag{display:inline-block;background:#fdecea;color:#a3261b;border-radius:.25rem;padding:.05rem .45rem;font-size:.85rem}\
ul{padding-left:1.2rem}small{color:#5a6478}h2{font-size:1.05rem;margin:0 0 .5rem}";

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        title = escape(title)
    );
    let mut response = Response::new(Body::from(html));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn with_retry_after(mut response: Response, seconds: u64) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// What a blocked-tenant page shows.
pub(crate) struct BlockedPage<'a> {
    pub(crate) entry: &'a TenantEntry,
    /// Where the tenant lives: `schema "acme"`, `file tenants/acme.db`.
    pub(crate) container: &'a str,
    pub(crate) host: &'a str,
    pub(crate) reference: &'a str,
    pub(crate) show_details: bool,
    pub(crate) retry_after: u64,
}

/// 503 for a tenant that is not served.
pub(crate) fn blocked(page_data: &BlockedPage<'_>, wants_json: bool) -> Response {
    let entry = page_data.entry;
    let Some(blocked) = &entry.blocked else {
        unreachable!("only blocked tenants get the blocked page")
    };
    let detail = blocked.error.as_deref().filter(|_| page_data.show_details);
    let response = if wants_json {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({
                "error": "tenant_not_ready",
                "tenant": entry.name,
                "schema": entry.name,
                "stored_in": page_data.container,
                "domain": page_data.host,
                "state": entry.state,
                "reason": blocked.reason,
                "missing": blocked.missing,
                "changed": blocked.changed,
                "recovery": blocked.recovery,
                "reference": page_data.reference,
                "detail": detail,
            }),
        )
    } else {
        let items = |list: &[tenantgate::migrations::MigrationRef]| -> String {
            list.iter()
                .map(|m| {
                    format!(
                        "<li><code>{}</code> {} <small>({})</small></li>",
                        m.version,
                        escape(&m.description),
                        escape(&m.file)
                    )
                })
                .collect()
        };
        let mut body = format!(
            "<p><span class=\"tag\">503 Service Unavailable</span></p>\
             <h1>This workspace is being updated</h1>\
             <p>The database of <strong>{tenant}</strong> does not yet hold every migration this \
             version of the application needs, so requests are paused instead of failing. Nothing was lost.</p>\
             <div class=\"card\"><dl>\
             <dt>Tenant</dt><dd id=\"tenant\">{tenant}</dd>\
             <dt>Stored in</dt><dd><code>{container}</code></dd>\
             <dt>Domain</dt><dd>{host}</dd>\
             <dt>State</dt><dd>{state}</dd>\
             <dt>Reason</dt><dd>{reason}</dd>\
             <dt>Reference</dt><dd><code id=\"reference\">{reference}</code></dd>\
             </dl></div>",
            tenant = escape(&entry.name),
            container = escape(page_data.container),
            host = escape(page_data.host),
            state = entry.state,
            reason = blocked.reason.as_str(),
            reference = escape(page_data.reference),
        );
        if !blocked.missing.is_empty() {
            body.push_str(&format!(
                "<div class=\"card\"><h2>Missing migrations</h2><ul>{}</ul></div>",
                items(&blocked.missing)
            ));
        }
        if !blocked.changed.is_empty() {
            body.push_str(&format!(
                "<div class=\"card\"><h2>Migrations applied from different files</h2><ul>{}</ul></div>",
                items(&blocked.changed)
            ));
        }
        if let Some(detail) = detail {
            body.push_str(&format!(
                "<div class=\"card\"><h2>Last error</h2><pre>{}</pre></div>",
                escape(detail)
            ));
        }
        body.push_str(&format!(
            "<div class=\"card\"><h2>How to recover</h2><p>An operator runs:</p><pre id=\"recovery\">{}</pre>\
             <p><small>This page turns back into the application by itself once the tenant is ready; \
             reload in a moment.</small></p></div>",
            escape(&blocked.recovery)
        ));
        page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Workspace being updated",
            &body,
        )
    };
    with_retry_after(response, page_data.retry_after)
}

/// 503 when the registry could not be confirmed within the staleness bound.
pub(crate) fn state_unknown(reference: &str, retry_after: u64, wants_json: bool) -> Response {
    let response = if wants_json {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "error": "migration_state_unknown", "reason": "migration state unknown", "reference": reference }),
        )
    } else {
        page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Migration state unknown",
            &format!(
                "<p><span class=\"tag\">503 Service Unavailable</span></p><h1>Migration state unknown</h1>\
                 <p>The registry of tenant migrations cannot be reached, so this server cannot tell whether \
                 your workspace is safe to serve. Requests are paused until it can.</p>\
                 <div class=\"card\"><dl><dt>Reference</dt><dd><code>{}</code></dd></dl></div>",
                escape(reference)
            ),
        )
    };
    with_retry_after(response, retry_after)
}

/// 404 for a host no tenant has.
pub(crate) fn unknown_host(host: &str, wants_json: bool) -> Response {
    if wants_json {
        return json_response(
            StatusCode::NOT_FOUND,
            json!({ "error": "unknown_host", "domain": host }),
        );
    }
    page(
        StatusCode::NOT_FOUND,
        "Unknown workspace",
        &format!(
            "<p><span class=\"tag\">404 Not Found</span></p><h1>No workspace at this address</h1>\
             <p>No tenant is registered for <strong>{}</strong>. Check the address.</p>",
            escape(host)
        ),
    )
}

/// 400 for a request whose host cannot be read.
pub(crate) fn bad_host(reason: &str, wants_json: bool) -> Response {
    if wants_json {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({ "error": "bad_host", "reason": reason }),
        );
    }
    page(
        StatusCode::BAD_REQUEST,
        "Bad request",
        &format!("<h1>Bad request</h1><p>{}</p>", escape(reason)),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup() {
        assert_eq!(
            super::escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
