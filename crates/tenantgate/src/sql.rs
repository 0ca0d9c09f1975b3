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
    Ok(statements(dialect, sql)?
        .into_iter()
        .find_map(|statement| controls_transaction(&statement)))
}

/// The leading words of one top-level statement and where it starts.
struct Statement {
    line: u64,
    /// Up to four leading tokens: unquoted words uppercased, anything else
    /// (a string, a quoted identifier, punctuation) as an empty string.
    words: Vec<String>,
}

const LEADING_WORDS: usize = 4;

/// Splits `sql` into top-level statements. A `BEGIN` inside a `CREATE`
/// statement (PostgreSQL `BEGIN ATOMIC`, SQLite trigger bodies) opens a
/// block whose semicolons do not end the statement; `CASE` inside such a
/// block nests until its own `END`.
fn statements(dialect: Dialect, sql: &str) -> Result<Vec<Statement>, Unreadable> {
    let tokens = tokenize(dialect, sql)?;
    let mut statements = Vec::new();
    let mut current: Option<Statement> = None;
    let mut depth = 0usize;
    for TokenWithSpan { token, span } in tokens {
        if matches!(token, Token::Whitespace(_) | Token::EOF) {
            continue;
        }
        if token == Token::SemiColon && depth == 0 {
            statements.extend(current.take());
            continue;
        }
        let word = match &token {
            Token::Word(w) if w.quote_style.is_none() => w.value.to_ascii_uppercase(),
            _ => String::new(),
        };
        let statement = current.get_or_insert_with(|| Statement {
            line: span.start.line,
            words: Vec::new(),
        });
        if statement.words.first().is_some_and(|w| w == "CREATE") {
            match word.as_str() {
                "BEGIN" => depth += 1,
                "CASE" if depth > 0 => depth += 1,
                "END" if depth > 0 => depth -= 1,
                _ => {}
            }
        }
        if statement.words.len() < LEADING_WORDS {
            statement.words.push(word);
        }
    }
    statements.extend(current);
    Ok(statements)
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

fn controls_transaction(statement: &Statement) -> Option<TransactionControl> {
    let words: Vec<&str> = statement.words.iter().map(String::as_str).collect();
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
    use proptest::prelude::*;

    use super::{transaction_control, Dialect};

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
