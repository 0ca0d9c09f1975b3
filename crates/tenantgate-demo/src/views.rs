//! The app's routes: `/{lang}/app/messages/`, sign-in, user creation.

use axum::{
    extract::{Path, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
    Form, Router,
};
use tenantgate::TenantName;
use tenantgate_http::ResolvedTenant;

use crate::store::AppDb;

/// The app's state: where its tenant data lives.
#[derive(Clone)]
pub struct AppState {
    /// The store request handlers query.
    pub db: AppDb,
}

/// The app's routes; mount them behind [`tenantgate_http::GuardLayer`].
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/{lang}/app/messages/", get(messages))
        .route("/{lang}/app/sign-in", get(sign_in))
        .route("/{lang}/app/users", post(new_user))
        .with_state(state)
}

const COOKIE: &str = "tenantgate_demo_user";

struct Texts {
    title: &'static str,
    signed_in_as: &'static str,
    online: &'static str,
    unread: &'static str,
    empty: &'static str,
    no_users: &'static str,
}

fn texts(lang: &str) -> Option<&'static Texts> {
    match lang {
        "en" => Some(&Texts {
            title: "Messages",
            signed_in_as: "Signed in as",
            online: "online",
            unread: "unread",
            empty: "No conversations yet.",
            no_users: "This workspace has no users yet.",
        }),
        "fr" => Some(&Texts {
            title: "Messages",
            signed_in_as: "Connecté en tant que",
            online: "en ligne",
            unread: "non lus",
            empty: "Aucune conversation pour l'instant.",
            no_users: "Cet espace n'a pas encore d'utilisateurs.",
        }),
        _ => None,
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Errors in handlers become a plain 500 naming the database error.
struct AppError(String);

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        tracing::error!(error = %self.0, "messages app error");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {}", self.0),
        )
            .into_response()
    }
}

impl<E: std::fmt::Display> From<E> for AppError {
    fn from(e: E) -> Self {
        Self(e.to_string())
    }
}

fn signed_in_user(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

async fn messages(
    State(state): State<AppState>,
    Path(lang): Path<String>,
    tenant: ResolvedTenant,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let Some(t) = texts(&lang) else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    let name = TenantName::parse(&tenant.name)?;
    let Some(dashboard) = state.db.dashboard(&name, signed_in_user(&headers)).await? else {
        return Ok(Html(page(
            &lang,
            t,
            &tenant.name,
            &format!("<p>{}</p>", t.no_users),
        ))
        .into_response());
    };
    let mut body = format!(
        "<p>{} <strong id=\"user\">{}</strong> · <span id=\"status\">{}</span></p>",
        t.signed_in_as,
        escape(&dashboard.display_name),
        if dashboard.online {
            t.online
        } else {
            "offline"
        }
    );
    if dashboard.conversations.is_empty() {
        body.push_str(&format!("<p>{}</p>", t.empty));
    } else {
        body.push_str("<ul id=\"conversations\">");
        for (title, unread) in &dashboard.conversations {
            body.push_str(&format!(
                "<li>{} <span class=\"unread\">{unread} {}</span></li>",
                escape(title),
                t.unread
            ));
        }
        body.push_str("</ul>");
    }
    Ok(Html(page(&lang, t, &tenant.name, &body)).into_response())
}

fn page(lang: &str, t: &Texts, tenant: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title} · {tenant}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}}\
         .unread{{color:#a3261b;font-size:.9rem}}</style></head>\
         <body><h1>{title}</h1><p><small>{tenant}</small></p>{body}</body></html>",
        title = t.title,
        tenant = escape(tenant),
    )
}

#[derive(serde::Deserialize)]
struct SignIn {
    user: String,
}

async fn sign_in(Path(lang): Path<String>, Query(q): Query<SignIn>) -> Response {
    if texts(&lang).is_none()
        || !q
            .user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return StatusCode::BAD_REQUEST.into_response();
    }
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Lax", q.user),
        )],
        Redirect::to(&format!("/{lang}/app/messages/")),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct NewUser {
    username: String,
    display_name: String,
}

async fn new_user(
    State(state): State<AppState>,
    Path(lang): Path<String>,
    tenant: ResolvedTenant,
    Form(form): Form<NewUser>,
) -> Result<Response, AppError> {
    let name = TenantName::parse(&tenant.name)?;
    let id = state
        .db
        .create_user(&name, &form.username, &form.display_name)
        .await?;
    Ok((
        StatusCode::SEE_OTHER,
        [(header::LOCATION, format!("/{lang}/app/messages/"))],
        format!("created user {id}"),
    )
        .into_response())
}
