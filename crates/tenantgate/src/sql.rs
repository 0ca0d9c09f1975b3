//! SQL read the way the server reads it: a migration file split into
//! top-level statements by a real SQL tokenizer (`sqlparser`'s, in the
//! store's dialect), so words inside strings, quoted identifiers, comments,
//! dollar-quoted bodies, `BEGIN ATOMIC … END` function bodies and SQLite
//! trigger bodies are never mistaken for statements.
//!
//! ```
//! use tenantgate::sql::{transaction_control, Dialect};
//!
//! let found = transaction_control(Dialect::Postgres, "CREATE TABLE t (x int);\ncommit;").unwrap();
//! assert_eq!(found.map(|f| (f.line, f.statement)), Some((2, "COMMIT".to_owned())));
//! let quoted = "INSERT INTO notes VALUES ('COMMIT;'); -- COMMIT;\nSAVEPOINT a; ROLLBACK TO a;";
//! assert!(transaction_control(Dialect::Postgres, quoted).unwrap().is_none());
//! ```

use sqlparser::{
    dialect::{PostgreSqlDialect, SQLiteDialect},
    tokenizer::{Token, TokenWithSpan, Tokenizer},
};

/// Whose lexical rules a text follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL: dollar quoting, `E''` strings, nested block comments.
    Postgres,
    /// SQLite: backtick and bracket identifiers.
    Sqlite,
}

/// A top-level statement that ends, commits, rolls back or opens a
/// transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionControl {
    /// The line it starts on, from 1.
    pub line: u64,
    /// Its leading words, uppercased (`COMMIT`, `ROLLBACK WORK`, `START TRANSACTION`).
    pub statement: String,
}

/// A text the tokenizer cannot read (an unterminated string or comment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The line the problem was found on, from 1.
    pub line: u64,
    /// The tokenizer's explanation.
    pub message: String,
}

/// The first top-level statement of `sql` that controls the transaction it
/// runs in (`COMMIT`, `END`, `ROLLBACK` but not `ROLLBACK TO`, `ABORT`,
/// `BEGIN`, `START TRANSACTION`, `PREPARE TRANSACTION`, any case, any
/// `WORK`/`TRANSACTION`/`AND CHAIN` suffix), or `None`. `SAVEPOINT`,
/// `RELEASE` and `ROLLBACK TO` stay inside the transaction and are allowed.
pub fn transaction_control(
    dialect: Dialect,
    sql: &str,
) -> Result<Option<TransactionControl>, Unreadable> {
    Ok(split(dialect, sql)?.iter().find_map(controls_transaction))
}

/// One top-level statement of a file: where it starts, its text (without
/// the `;` that ends it), and its tokens as a linter reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlStatement {
    /// The line it starts on, from 1.
    pub line: u64,
    /// Its text as written, comments inside it included.
    pub sql: String,
    /// Its tokens without whitespace and comments: unquoted words
    /// uppercased, quoted identifiers and strings as written, punctuation
    /// as itself.
    pub tokens: Vec<String>,
}

/// Splits `sql` into its top-level statements by the same rules the
/// transaction-control check uses (a `BEGIN ATOMIC` body or trigger body
/// stays one statement).
pub fn split(dialect: Dialect, sql: &str) -> Result<Vec<SqlStatement>, Unreadable> {
    let offsets = LineOffsets::new(sql);
    let mut found = Vec::new();
    let mut current: Option<(usize, usize, u64, Vec<String>)> = None;
    let mut depth = 0usize;
    for TokenWithSpan { token, span } in tokenize(dialect, sql)? {
        if matches!(token, Token::Whitespace(_) | Token::EOF) {
            continue;
        }
        if token == Token::SemiColon && depth == 0 {
            if let Some((start, end, line, tokens)) = current.take() {
                found.push(SqlStatement {
                    line,
                    sql: sql[start..end].to_owned(),
                    tokens,
                });
            }
            continue;
        }
        let (start, end) = (offsets.byte(span.start), offsets.byte(span.end));
        let text = match &token {
            Token::Word(w) if w.quote_style.is_none() => w.value.to_ascii_uppercase(),
            other => other.to_string(),
        };
        let statement = current.get_or_insert_with(|| (start, end, span.start.line, Vec::new()));
        if statement.3.first().is_some_and(|w| w == "CREATE") {
            match text.as_str() {
                "BEGIN" => depth += 1,
                "CASE" if depth > 0 => depth += 1,
                "END" if depth > 0 => depth -= 1,
                _ => {}
            }
        }
        statement.1 = end;
        statement.3.push(text);
    }
    if let Some((start, end, line, tokens)) = current {
        found.push(SqlStatement {
            line,
            sql: sql[start..end].to_owned(),
            tokens,
        });
    }
    Ok(found)
}

/// Byte offsets of a text's line/column locations (columns count characters).
struct LineOffsets<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineOffsets<'a> {
    fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { text, starts }
    }

    fn byte(&self, location: sqlparser::tokenizer::Location) -> usize {
        let Some(&line_start) = self.starts.get(location.line.saturating_sub(1) as usize) else {
            return self.text.len();
        };
        self.text[line_start..]
            .char_indices()
            .nth(location.column.saturating_sub(1) as usize)
            .map_or(self.text.len(), |(i, _)| line_start + i)
    }
}

fn tokenize(dialect: Dialect, sql: &str) -> Result<Vec<TokenWithSpan>, Unreadable> {
    let tokens = match dialect {
        Dialect::Postgres => Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location(),
        Dialect::Sqlite => Tokenizer::new(&SQLiteDialect {}, sql).tokenize_with_location(),
    };
    tokens.map_err(|e| Unreadable {
        line: e.location.line,
        message: e.message,
    })
}

/// How many leading tokens decide whether a statement controls the transaction.
const LEADING_WORDS: usize = 4;

fn controls_transaction(statement: &SqlStatement) -> Option<TransactionControl> {
    let words: Vec<&str> = statement
        .tokens
        .iter()
        .take(LEADING_WORDS)
        .map(String::as_str)
        .collect();
    let leading = |n: usize| words[..n.min(words.len())].join(" ");
    let found = match words.as_slice() {
        ["COMMIT" | "END" | "ABORT" | "BEGIN", ..] => leading(1),
        ["START" | "PREPARE", "TRANSACTION", ..] => leading(2),
        ["ROLLBACK", "WORK" | "TRANSACTION", "TO", ..] | ["ROLLBACK", "TO", ..] => return None,
        ["ROLLBACK", "WORK" | "TRANSACTION", ..] => leading(2),
        ["ROLLBACK", ..] => leading(1),
        _ => return None,
    };
    Some(TransactionControl {
        line: statement.line,
        statement: found,
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn split_keeps_each_statement_as_written() {
        let sql = "CREATE TABLE t (x int, note text DEFAULT 'a;b');\n-- c;\nCREATE INDEX ON t (x);\n\
                   CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;\n  ALTER TABLE \"T\" ADD COLUMN é serial";
        let found = split(Dialect::Postgres, sql).unwrap();
        let texts: Vec<&str> = found.iter().map(|s| s.sql.as_str()).collect();
        assert_eq!(
            texts,
            [
                "CREATE TABLE t (x int, note text DEFAULT 'a;b')",
                "CREATE INDEX ON t (x)",
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END",
                "ALTER TABLE \"T\" ADD COLUMN é serial",
            ]
        );
        assert_eq!(
            found.iter().map(|s| s.line).collect::<Vec<_>>(),
            [1, 3, 4, 5]
        );
        assert_eq!(
            found[3].tokens,
            ["ALTER", "TABLE", "\"T\"", "ADD", "COLUMN", "é", "SERIAL"]
        );
    }

    use proptest::prelude::*;

    use super::{split, transaction_control, Dialect};

    fn found(dialect: Dialect, sql: &str) -> Option<(u64, String)> {
        transaction_control(dialect, sql)
            .unwrap()
            .map(|f| (f.line, f.statement))
    }

    #[test]
    fn refuses_every_spelling_of_transaction_control() {
        for (sql, statement) in [
            ("COMMIT;", "COMMIT"),
            ("commit work;", "COMMIT"),
            ("Commit Transaction", "COMMIT"),
            ("COMMIT AND CHAIN;", "COMMIT"),
            ("END;", "END"),
            ("end transaction;", "END"),
            ("ROLLBACK;", "ROLLBACK"),
            ("rollback work;", "ROLLBACK WORK"),
            ("ROLLBACK PREPARED 'x';", "ROLLBACK"),
            ("ABORT;", "ABORT"),
            ("BEGIN;", "BEGIN"),
            ("begin transaction;", "BEGIN"),
            ("BEGIN IMMEDIATE;", "BEGIN"),
            (
                "START TRANSACTION ISOLATION LEVEL SERIALIZABLE;",
                "START TRANSACTION",
            ),
            ("PREPARE TRANSACTION 'x';", "PREPARE TRANSACTION"),
        ] {
            for dialect in [Dialect::Postgres, Dialect::Sqlite] {
                let sql = format!("CREATE TABLE t (x int);\n\n{sql}\nCREATE TABLE u (y int);");
                assert_eq!(
                    found(dialect, &sql),
                    Some((3, statement.to_owned())),
                    "{dialect:?}: {sql}"
                );
            }
        }
    }

    #[test]
    fn allows_the_same_words_where_they_do_not_control_the_transaction() {
        let both = [
            "INSERT INTO notes VALUES ('COMMIT;'), ('x; ROLLBACK; y');",
            "CREATE TABLE \"commit\" (\"end\" int); SELECT \"rollback\" FROM t;",
            "-- COMMIT;\nSELECT 1; /* ROLLBACK; */ SELECT 2;",
            "SAVEPOINT a; ROLLBACK TO SAVEPOINT a; RELEASE SAVEPOINT a;",
            "SAVEPOINT a; ROLLBACK WORK TO a; ROLLBACK TRANSACTION TO SAVEPOINT a;",
            "PREPARE q AS SELECT 1; SELECT CASE WHEN true THEN 1 END;",
            "UPDATE t SET x = 1 WHERE note = 'end';",
        ];
        for sql in both {
            for dialect in [Dialect::Postgres, Dialect::Sqlite] {
                assert_eq!(found(dialect, sql), None, "{dialect:?}: {sql}");
            }
        }
        let postgres = [
            "CREATE FUNCTION f() RETURNS void AS $$ BEGIN COMMIT; END $$ LANGUAGE plpgsql;",
            "DO $body$ BEGIN ROLLBACK; END $body$;",
            "CREATE FUNCTION g(a int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN a > 0 THEN 1 ELSE 0 END; SELECT 2; END; SELECT 3;",
            "CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); END;",
            "SELECT E'it\\'s COMMIT;';",
            "/* nested /* COMMIT; */ still a comment; */ SELECT 1;",
        ];
        for sql in postgres {
            assert_eq!(found(Dialect::Postgres, sql), None, "{sql}");
        }
        let sqlite = [
            "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE u SET n = CASE WHEN n > 0 THEN n + 1 ELSE 1 END; INSERT INTO log VALUES ('end'); END;",
            "CREATE TABLE `commit` ([end] int);",
        ];
        for sql in sqlite {
            assert_eq!(found(Dialect::Sqlite, sql), None, "{sql}");
        }
        assert_eq!(
            found(
                Dialect::Postgres,
                "CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;\nCOMMIT;"
            ),
            Some((2, "COMMIT".into())),
            "a COMMIT after a function body is still top level"
        );
    }

    #[test]
    fn the_repository_migrations_read_as_plain_transactional_sql() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut read = 0;
        for (folder, dialect) in [
            ("migrations/postgres", Dialect::Postgres),
            ("migrations/sqlite", Dialect::Sqlite),
            ("examples/quickstart/migrations", Dialect::Postgres),
        ] {
            for set in ["shared", "tenant", "backfills"] {
                let Ok(entries) = std::fs::read_dir(root.join(folder).join(set)) else {
                    continue;
                };
                for entry in entries {
                    let path = entry.unwrap().path();
                    let sql = std::fs::read_to_string(&path).unwrap();
                    assert_eq!(found(dialect, &sql), None, "{}", path.display());
                    read += 1;
                }
            }
        }
        assert!(read >= 5, "read {read} files");
    }

    #[test]
    fn an_unterminated_string_is_unreadable() {
        let e = transaction_control(Dialect::Postgres, "SELECT 1;\nSELECT 'open").unwrap_err();
        assert_eq!(e.line, 2);
    }

    proptest! {
        /// Whatever hides inside a string, a quoted identifier or a comment
        /// is never taken for a statement, and the tokenizer never panics.
        #[test]
        fn hidden_words_are_never_statements(hidden in "[a-zA-Z; ]{0,40}") {
            let quoted = hidden.replace('\'', "''");
            let ident = hidden.replace('"', "\"\"");
            let sql = format!(
                "SELECT '{quoted}';\nSELECT \"{ident}\" FROM t; -- {hidden}\n/* {hidden} */ SELECT $x${hidden}$x$;"
            );
            prop_assert_eq!(found(Dialect::Postgres, &sql), None);
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = transaction_control(Dialect::Postgres, &text);
            let _ = transaction_control(Dialect::Sqlite, &text);
        }
    }
}
