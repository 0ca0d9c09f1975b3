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
use tokio_postgres::{types::Type, GenericClient};

/// The app's state: a pool for its own queries.
#[derive(Clone)]
pub struct AppState {
    /// Connections for request handlers.
    pub pool: deadpool_postgres::Pool,
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

/// `SET LOCAL search_path` for the request's tenant: inside the
/// transaction, so the pooled connection never carries it further.
async fn enter_tenant(
    client: &impl GenericClient,
    tenant: &ResolvedTenant,
) -> Result<(), AppError> {
    let name = TenantName::parse(&tenant.name)?;
    client
        .batch_execute(&format!(
            "SET LOCAL search_path TO {}, public",
            name.quoted()
        ))
        .await?;
    Ok(())
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
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    enter_tenant(&*tx, &tenant).await?;
    let wanted = signed_in_user(&headers);
    let user = tx
        .query_typed(
            "SELECT id, display_name FROM users WHERE $1::text IS NULL OR username = $1 ORDER BY (username = $1) DESC NULLS LAST, id LIMIT 1",
            &[(&wanted, Type::TEXT)],
        )
        .await?;
    let Some(user) = user.first() else {
        tx.commit().await?;
        return Ok(Html(page(
            &lang,
            t,
            &tenant.name,
            &format!("<p>{}</p>", t.no_users),
        ))
        .into_response());
    };
    let (user_id, display_name): (i64, String) = (user.get(0), user.get(1));
    // The upsert: a user without a status row gets one, never a 500.
    let status = tx
        .query_typed(
            "INSERT INTO user_statuses (user_id, is_online, last_seen) VALUES ($1, true, now())
             ON CONFLICT (user_id) DO UPDATE SET is_online = true, last_seen = now()
             RETURNING is_online",
            &[(&user_id, Type::INT8)],
        )
        .await?;
    let online: bool = status[0].get(0);
    let conversations = tx
        .query_typed(
            "SELECT c.title,
                    count(m.id) FILTER (WHERE m.sender_id <> $1 AND m.sent_at > coalesce(p.last_read_at, '-infinity'))
               FROM participants p
               JOIN conversations c ON c.id = p.conversation_id
               LEFT JOIN messages m ON m.conversation_id = c.id
              WHERE p.user_id = $1
              GROUP BY c.id, c.title
              ORDER BY max(m.sent_at) DESC NULLS LAST, c.id",
            &[(&user_id, Type::INT8)],
        )
        .await?;
    tx.commit().await?;
    let mut body = format!(
        "<p>{} <strong id=\"user\">{}</strong> · <span id=\"status\">{}</span></p>",
        t.signed_in_as,
        escape(&display_name),
        if online { t.online } else { "offline" }
    );
    if conversations.is_empty() {
        body.push_str(&format!("<p>{}</p>", t.empty));
    } else {
        body.push_str("<ul id=\"conversations\">");
        for row in &conversations {
            let (title, unread): (String, i64) = (row.get(0), row.get(1));
            body.push_str(&format!(
                "<li>{} <span class=\"unread\">{unread} {}</span></li>",
                escape(&title),
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
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    enter_tenant(&*tx, &tenant).await?;
    let id = create_user(&*tx, &form.username, &form.display_name).await?;
    tx.commit().await?;
    Ok((
        StatusCode::SEE_OTHER,
        [(header::LOCATION, format!("/{lang}/app/messages/"))],
        format!("created user {id}"),
    )
        .into_response())
}

/// Creates a user and its status row with the caller's transaction: both
/// or neither. The caller has entered the tenant's schema.
pub async fn create_user(
    client: &impl GenericClient,
    username: &str,
    display_name: &str,
) -> Result<i64, tokio_postgres::Error> {
    let row = client
        .query_typed(
            "WITH u AS (INSERT INTO users (username, display_name) VALUES ($1, $2) RETURNING id)
             INSERT INTO user_statuses (user_id) SELECT id FROM u RETURNING user_id",
            &[(&username, Type::TEXT), (&display_name, Type::TEXT)],
        )
        .await?;
    Ok(row[0].get(0))
}
