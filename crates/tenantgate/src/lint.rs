//! Statements Citus refuses in distributed schemas, found before any SQL
//! runs, so a release never fails halfway across a Citus fleet.
//!
//! Each rule is decided from the SQL alone (the statement's tokens, read by
//! [`crate::sql::split`]), after Citus 13's own checks: triggers
//! (`commands/trigger.c`), inheritance and `CREATE TABLE … OF`
//! (`commands/table.c`), serial and identity columns added to existing
//! tables (`commands/table.c`), foreign keys out of a distributed schema
//! (`commands/schema_based_sharding.c`). What the SQL alone cannot settle
//! (a foreign key to a table that may be a reference table) is a warning.
//!
//! ```
//! use tenantgate::{lint, MigrationSet};
//!
//! let set = MigrationSet::from_files([
//!     ("0001_users.sql", "CREATE TABLE users (id bigint PRIMARY KEY);"),
//!     ("0002_audit.sql", "CREATE TABLE audit (id bigint);\nCREATE TRIGGER t AFTER INSERT ON users FOR EACH ROW EXECUTE FUNCTION f();"),
//! ]).unwrap();
//! let findings = lint::citus_tenant_set(&set);
//! assert_eq!(findings.len(), 1);
//! assert_eq!((findings[0].file.as_str(), findings[0].line, findings[0].rule), ("0002_audit.sql", 2, "citus_trigger"));
//! ```

use crate::{
    sql::{split, Dialect, SqlStatement},
    MigrationFolder, MigrationSet,
};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Citus refuses the statement: the migration would fail on every tenant.
    Error,
    /// Citus accepts it, but it may not mean what it does on one server.
    Warning,
}

/// One statement a rule caught.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// The migration file.
    pub file: String,
    /// The line the statement starts on, from 1.
    pub line: u64,
    /// The rule's name.
    pub rule: &'static str,
    /// How bad it is.
    pub severity: Severity,
    /// What Citus does with it, and what to write instead.
    pub message: String,
}

/// Every finding of the folder for a Citus placement: the tenant set's
/// statements against distributed schemas, the shared set's foreign keys
/// into them.
pub fn citus(folder: &MigrationFolder) -> Vec<Finding> {
    let mut findings = citus_tenant_set(&folder.tenant);
    for m in folder.shared.iter() {
        for statement in statements(&m.sql) {
            if let Some(target) =
                qualified_reference(&statement.tokens, |schema| schema != "PUBLIC")
            {
                findings.push(Finding {
                    file: format!("shared/{}", m.file),
                    line: statement.line,
                    rule: "citus_foreign_key_into_tenant",
                    severity: Severity::Warning,
                    message: format!(
                        "a foreign key from the shared schema into {target}: Citus accepts it but does not enforce it when tenant rows are deleted"
                    ),
                });
            }
        }
    }
    findings
}

/// The findings of a tenant migration set on Citus.
pub fn citus_tenant_set(set: &MigrationSet) -> Vec<Finding> {
    let mut findings = Vec::new();
    for m in set.iter() {
        for statement in statements(&m.sql) {
            for (rule, severity, message) in tenant_rules(&statement.tokens) {
                findings.push(Finding {
                    file: m.file.clone(),
                    line: statement.line,
                    rule,
                    severity,
                    message,
                });
            }
        }
    }
    findings
}

/// Refuses `folder` for Citus placements when a rule finds an error
/// ([`crate::Error::CitusRefuses`], errors first).
pub fn refuse_for_citus(folder: &MigrationFolder) -> Result<(), crate::Error> {
    let mut findings = citus(folder);
    if !findings.iter().any(|f| f.severity == Severity::Error) {
        return Ok(());
    }
    findings.sort_by_key(|f| f.severity != Severity::Error);
    Err(crate::Error::CitusRefuses { findings })
}

fn statements(sql: &str) -> Vec<SqlStatement> {
    // Unreadable files are refused when the folder is loaded.
    split(Dialect::Postgres, sql).unwrap_or_default()
}

type Hit = (&'static str, Severity, String);

fn tenant_rules(tokens: &[String]) -> Vec<Hit> {
    let words: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let mut hits = Vec::new();
    // CREATE [OR REPLACE] [CONSTRAINT] TRIGGER; CREATE [GLOBAL|LOCAL]
    // [TEMP|UNLOGGED] TABLE.
    let head: Vec<&str> = words
        .iter()
        .skip(1)
        .filter(|w| {
            !matches!(
                **w,
                "OR" | "REPLACE"
                    | "CONSTRAINT"
                    | "GLOBAL"
                    | "LOCAL"
                    | "TEMP"
                    | "TEMPORARY"
                    | "UNLOGGED"
            )
        })
        .take(1)
        .copied()
        .collect();
    let creates = |kind: &str| words.first() == Some(&"CREATE") && head == [kind];
    if creates("TRIGGER") {
        hits.push((
            "citus_trigger",
            Severity::Error,
            "Citus refuses triggers on the tables of a distributed schema (unless citus.enable_unsafe_triggers is on); do the work in the application or a scheduled job".into(),
        ));
    }
    if creates("TABLE") {
        if words.windows(2).any(|w| w == ["INHERITS", "("]) {
            hits.push((
                "citus_inherits",
                Severity::Error,
                "tables in a distributed schema cannot inherit or be inherited; use declarative partitioning or a separate table".into(),
            ));
        }
        if table_of(&words) {
            hits.push((
                "citus_create_table_of",
                Severity::Error,
                "Citus refuses CREATE TABLE … OF type in a distributed schema; list the columns"
                    .into(),
            ));
        }
    }
    if words.starts_with(&["ALTER", "TABLE"]) {
        for column in added_columns(&words) {
            if column.iter().any(|w| SERIALS.contains(w)) {
                hits.push((
                    "citus_add_serial_column",
                    Severity::Error,
                    "Citus refuses adding a serial column to an existing distributed table; add a bigint column, then ALTER COLUMN … SET DEFAULT nextval(…) with a sequence of its own".into(),
                ));
            }
            if column.windows(2).any(|w| w == ["AS", "IDENTITY"]) {
                hits.push((
                    "citus_add_identity_column",
                    Severity::Error,
                    "Citus refuses adding an identity column to an existing distributed table; create the table with it, or use a bigint column with a sequence default".into(),
                ));
            }
        }
    }
    if let Some(target) = qualified_reference(&words, |_| true) {
        hits.push((
            "citus_foreign_key_out_of_schema",
            Severity::Warning,
            format!(
                "a foreign key to {target}: Citus accepts one out of a distributed schema only to a reference table, and refuses it to a plain table"
            ),
        ));
    }
    hits
}

const SERIALS: [&str; 6] = [
    "SERIAL",
    "BIGSERIAL",
    "SMALLSERIAL",
    "SERIAL2",
    "SERIAL4",
    "SERIAL8",
];

/// `CREATE [TEMP|UNLOGGED …] TABLE [IF NOT EXISTS] name OF type`.
fn table_of(words: &[&str]) -> bool {
    let Some(table) = words.iter().position(|w| *w == "TABLE") else {
        return false;
    };
    let mut at = table + 1;
    if words.get(at..at + 3) == Some(&["IF", "NOT", "EXISTS"]) {
        at += 3;
    }
    at += if words.get(at + 1) == Some(&".") {
        3
    } else {
        1
    };
    words.get(at) == Some(&"OF")
}

/// The tokens of each `ADD [COLUMN]` clause of an `ALTER TABLE`, up to the
/// next top-level comma.
fn added_columns<'a>(words: &'a [&'a str]) -> Vec<&'a [&'a str]> {
    let mut clauses = Vec::new();
    let mut depth = 0i32;
    let mut start: Option<usize> = None;
    for (i, word) in words.iter().enumerate() {
        match *word {
            "(" => depth += 1,
            ")" => depth -= 1,
            "," if depth == 0 => {
                if let Some(s) = start.take() {
                    clauses.push(&words[s..i]);
                }
            }
            "ADD" if depth == 0 => {
                let next = words.get(i + 1).copied().unwrap_or_default();
                let constraint = matches!(
                    next,
                    "CONSTRAINT" | "PRIMARY" | "UNIQUE" | "CHECK" | "FOREIGN" | "EXCLUDE"
                );
                if !constraint {
                    start = Some(i);
                }
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        clauses.push(&words[s..]);
    }
    clauses
}

/// `schema.table` of the first `REFERENCES schema.table` whose schema
/// (uppercased) `counts`.
fn qualified_reference<S: AsRef<str>>(
    words: &[S],
    counts: impl Fn(&str) -> bool,
) -> Option<String> {
    words.windows(4).find_map(|w| {
        let (keyword, schema, dot, table) =
            (w[0].as_ref(), w[1].as_ref(), w[2].as_ref(), w[3].as_ref());
        (keyword == "REFERENCES" && dot == "." && counts(schema))
            .then(|| format!("{}.{}", schema.to_lowercase(), table.to_lowercase()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(sql: &str) -> Vec<&'static str> {
        statements(sql)
            .iter()
            .flat_map(|s| tenant_rules(&s.tokens))
            .map(|(rule, _, _)| rule)
            .collect()
    }

    #[test]
    fn refused_statements_are_caught() {
        assert_eq!(
            rules(
                "create or replace trigger t before update on x for each row execute function f()"
            ),
            ["citus_trigger"]
        );
        assert_eq!(
            rules(
                "CREATE CONSTRAINT TRIGGER t AFTER INSERT ON x FOR EACH ROW EXECUTE FUNCTION f()"
            ),
            ["citus_trigger"]
        );
        assert_eq!(
            rules("CREATE TABLE child (extra int) INHERITS (parent)"),
            ["citus_inherits"]
        );
        assert_eq!(
            rules("CREATE TABLE IF NOT EXISTS app.t OF some_type"),
            ["citus_create_table_of"]
        );
        assert_eq!(
            rules("ALTER TABLE users ADD COLUMN n bigserial"),
            ["citus_add_serial_column"]
        );
        assert_eq!(
            rules("ALTER TABLE users ADD n serial4, ADD COLUMN m int"),
            ["citus_add_serial_column"]
        );
        assert_eq!(
            rules(
                "ALTER TABLE users ADD COLUMN IF NOT EXISTS n bigint GENERATED ALWAYS AS IDENTITY"
            ),
            ["citus_add_identity_column"]
        );
        assert_eq!(
            rules("ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (p) REFERENCES public.plans (id)"),
            ["citus_foreign_key_out_of_schema"]
        );
    }

    #[test]
    fn allowed_statements_pass() {
        for sql in [
            "CREATE TABLE users (id bigserial PRIMARY KEY, n bigint GENERATED ALWAYS AS IDENTITY)",
            "CREATE TABLE t (id bigint, user_id bigint REFERENCES users (id))",
            "ALTER TABLE users ADD COLUMN note text DEFAULT 'serial'",
            "ALTER TABLE users ADD CONSTRAINT u UNIQUE (note)",
            "CREATE INDEX ON users (note)",
            "CREATE TABLE \"trigger\" (id int)",
            "CREATE TABLE trigger_log (id int, kind text)",
            "CREATE INDEX trigger ON users (note)",
            "COMMENT ON TABLE users IS 'CREATE TRIGGER x'",
        ] {
            assert_eq!(rules(sql), Vec::<&str>::new(), "{sql}");
        }
    }
}
