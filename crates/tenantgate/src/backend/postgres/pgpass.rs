//! libpq's password file (`PGPASSFILE`, else `~/.pgpass`), which
//! tokio-postgres does not read: a connection string without a password
//! takes the first matching line's, as `psql` would.
//!
//! Each line is `hostname:port:database:username:password`; `*` matches
//! anything, `\:` and `\\` escape, `#` starts a comment. As in libpq, a file
//! that the group or others may read is ignored (with a warning), and a
//! connection over a Unix socket matches the host name `localhost`.

use std::path::{Path, PathBuf};

/// The password file libpq would read: `PGPASSFILE`, else `~/.pgpass`.
pub(crate) fn location() -> Option<PathBuf> {
    if let Some(file) = std::env::var_os("PGPASSFILE").filter(|f| !f.is_empty()) {
        return Some(PathBuf::from(file));
    }
    std::env::var_os("HOME").map(|home| Path::new(&home).join(".pgpass"))
}

/// What a connection is made to, as the password file's fields name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target<'a> {
    pub(crate) host: &'a str,
    pub(crate) port: u16,
    pub(crate) database: &'a str,
    pub(crate) user: &'a str,
}

/// The password of the first line of `file` that matches `target`; `None`
/// when the file is missing, unreadable, open to others, or has no match.
pub(crate) fn password_for(file: &Path, target: &Target) -> Option<String> {
    let metadata = std::fs::metadata(file).ok()?;
    if !metadata.is_file() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if metadata.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                file = %file.display(),
                "password file has group or world access; permissions should be u=rw (0600) or less: ignored, as libpq does"
            );
            return None;
        }
    }
    let text = std::fs::read_to_string(file).ok()?;
    lookup(&text, target)
}

/// The password of the first line of a password file's `text` matching `target`.
pub(crate) fn lookup(text: &str, target: &Target) -> Option<String> {
    let port = target.port.to_string();
    let wanted = [target.host, port.as_str(), target.database, target.user];
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(fields)
        .find(|fields| {
            fields[..4]
                .iter()
                .zip(wanted)
                .all(|(field, value)| field == "*" || field == value)
        })
        .map(|mut fields| fields.swap_remove(4))
}

/// A line's five fields, unescaped; `None` for a line with fewer.
fn fields(line: &str) -> Option<Vec<String>> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut()?.push(chars.next().unwrap_or('\\')),
            ':' if fields.len() < 5 => fields.push(String::new()),
            other => fields.last_mut()?.push(other),
        }
    }
    (fields.len() == 5).then_some(fields)
}

#[cfg(test)]
mod tests {
    use super::{lookup, Target};

    const TARGET: Target = Target {
        host: "db.example.com",
        port: 5432,
        database: "app",
        user: "owner",
    };

    #[test]
    fn the_first_matching_line_wins_and_stars_match_anything() {
        let file = "# comment\n\
                    other.example.com:5432:app:owner:nope\n\
                    db.example.com:5433:*:*:wrong-port\n\
                    db.example.com:*:app:owner:first\n\
                    *:*:*:*:fallback\n";
        assert_eq!(lookup(file, &TARGET).as_deref(), Some("first"));
        assert_eq!(
            lookup(
                file,
                &Target {
                    user: "else",
                    ..TARGET
                }
            )
            .as_deref(),
            Some("fallback")
        );
    }

    #[test]
    fn escapes_are_read_and_short_lines_skipped() {
        let file = "db.example.com:5432:app\n\
                    db.example.com:5432:app:owner:p\\:w\\\\d:with colon\n";
        assert_eq!(lookup(file, &TARGET).as_deref(), Some("p:w\\d:with colon"));
        assert_eq!(lookup("", &TARGET), None);
    }
}
