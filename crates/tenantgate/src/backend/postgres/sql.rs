//! Small SQL helpers: literals, lock keys, error conversion.

use sha2::{Digest, Sha384};
use tokio_postgres::error::SqlState;

use crate::{DbError, LedgerKind, TenantName};

/// The advisory-lock class every tenantgate lock uses ("tg" in ASCII).
const LOCK_CLASS: i32 = 0x7467;

/// The channel state changes are announced on.
pub(crate) const CHANNEL: &str = "tenantgate";

/// `pg_advisory_xact_lock` arguments for a named thing (a tenant, or an
/// internal name no tenant can have).
pub(crate) fn lock_key(name: &str) -> (i32, i32) {
    let digest = Sha384::digest(name.as_bytes());
    (
        LOCK_CLASS,
        i32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]),
    )
}

/// The SQL that takes the transaction-scoped lock on `name`.
pub(crate) fn xact_lock_sql(name: &str) -> String {
    format!("SELECT {};", xact_lock_call(name))
}

/// The function call that takes the transaction-scoped lock on `name`, to
/// select along with other calls.
pub(crate) fn xact_lock_call(name: &str) -> String {
    let (class, key) = lock_key(name);
    format!("pg_advisory_xact_lock({class}, {key})")
}

/// A SQL string literal. Only for text from migration files (descriptions)
/// and validated names, never for user input, which goes as bind
/// parameters.
pub(crate) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The `kind` ledger table of `tenant`, schema-qualified and quoted.
pub(crate) fn tenant_ledger(tenant: &TenantName, kind: LedgerKind) -> String {
    format!("{}.{}", tenant.quoted(), kind.table())
}

/// Converts a driver error into the engine's neutral form.
pub(crate) fn db_error(e: &tokio_postgres::Error) -> DbError {
    match e.as_db_error() {
        Some(db) => {
            let mut message = db.message().to_owned();
            if let Some(detail) = db.detail() {
                message.push_str(": ");
                message.push_str(detail);
            }
            let code = db.code();
            DbError {
                code: Some(code.code().to_owned()),
                message,
                // Class 08 from the server itself: it could not reach
                // another node (a Citus worker) for this statement.
                connection_lost: [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                ]
                .contains(code)
                    || code.code().starts_with("08"),
            }
        }
        None => {
            // The driver's text ("error performing TLS handshake") leaves
            // the reason in its sources ("invalid peer certificate: …").
            let mut message = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                message.push_str(": ");
                message.push_str(&cause.to_string());
                source = cause.source();
            }
            DbError {
                code: None,
                message,
                connection_lost: true,
            }
        }
    }
}

/// The engine error for a failed statement outside tenant migrations:
/// unavailable when the connection is gone, a database error otherwise.
pub(crate) fn error_while(context: &str, e: &tokio_postgres::Error) -> crate::Error {
    let source = db_error(e);
    let context = context.to_owned();
    if source.connection_lost {
        crate::Error::DatabaseUnavailable { context, source }
    } else {
        crate::Error::Database { context, source }
    }
}

/// Whether the error is a lock or statement timeout worth retrying.
pub(crate) fn is_lock_timeout(e: &DbError) -> bool {
    e.code.as_deref() == Some(SqlState::LOCK_NOT_AVAILABLE.code())
}

/// The statement that bounds a transaction's lock and statement waits:
/// `set_config(…, true)` is `SET LOCAL`, three settings in one statement.
pub(crate) fn limits_sql(limits: &crate::backend::Limits) -> String {
    format!(
        "SELECT set_config('lock_timeout', '{}', true), set_config('statement_timeout', '{}', true), set_config('standard_conforming_strings', 'on', true);",
        limits.lock_timeout.as_millis().max(1),
        limits.statement_timeout.map_or(0, |d| d.as_millis().max(1))
    )
}

/// Runs `sql`, which takes the names of `tenants` as `$1` (`text[]`) and
/// returns (tenant name, text) rows, into a map; `context` names the work
/// in errors.
pub(crate) async fn per_tenant(
    client: &tokio_postgres::Client,
    sql: &str,
    tenants: &[TenantName],
    context: &str,
) -> Result<std::collections::HashMap<TenantName, String>, crate::Error> {
    let names: Vec<&str> = tenants.iter().map(TenantName::as_str).collect();
    let rows = client
        .query_typed(sql, &[(&names, tokio_postgres::types::Type::TEXT_ARRAY)])
        .await
        .map_err(|e| error_while(context, &e))?;
    rows.iter()
        .map(|row| {
            let name =
                crate::registry::read_back("the tenant name", row.get(0), TenantName::parse)?;
            Ok((name, row.get(1)))
        })
        .collect()
}

/// The one row `sql` returns, by the unnamed statement (nothing a
/// transaction-pooling proxy could lose between messages); `context` names
/// the work in errors.
pub(crate) async fn one_row(
    client: &tokio_postgres::Client,
    sql: &str,
    params: &[(
        &(dyn tokio_postgres::types::ToSql + Sync),
        tokio_postgres::types::Type,
    )],
    context: &str,
) -> Result<tokio_postgres::Row, crate::Error> {
    client
        .query_typed(sql, params)
        .await
        .map_err(|e| error_while(context, &e))?
        .into_iter()
        .next()
        .ok_or_else(|| crate::Error::Database {
            context: context.to_owned(),
            source: DbError {
                code: None,
                message: "the query returned no row".into(),
                connection_lost: false,
            },
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_double_quotes() {
        assert_eq!(literal("it's"), "'it''s'");
    }

    #[test]
    fn lock_keys_differ_per_name_and_are_stable() {
        assert_eq!(lock_key("acme"), lock_key("acme"));
        assert_ne!(lock_key("acme"), lock_key("globex"));
    }
}
