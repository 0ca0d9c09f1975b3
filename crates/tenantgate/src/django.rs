//! A Django project's required set: the migration files of its tenant apps,
//! keyed as `django_migrations` records them (`app.name`).
//!
//! tenantgate never runs Django's migrations; it reads which exist (each
//! app's `migrations/*.py`, as Django's loader finds them) and which a
//! squashed migration `replaces`, to tell from each schema's
//! `django_migrations` whether the tenant holds what the code needs.
//!
//! ```
//! # let project = tempfile::tempdir().unwrap();
//! # let dir = project.path().join("shop/migrations");
//! # std::fs::create_dir_all(&dir).unwrap();
//! # std::fs::write(dir.join("__init__.py"), "").unwrap();
//! # std::fs::write(dir.join("0001_initial.py"), "class Migration: pass").unwrap();
//! # std::fs::write(dir.join("0002_orders.py"), "class Migration: pass").unwrap();
//! use tenantgate::django::{self, DjangoApp};
//!
//! let shop = DjangoApp::parse("shop", project.path())?;
//! let set = django::load(&[shop])?;
//! let keys: Vec<&str> = set.iter().map(|m| m.key.as_str()).collect();
//! assert_eq!(keys, ["shop.0001_initial", "shop.0002_orders"]);
//! # Ok::<(), tenantgate::Error>(())
//! ```

use std::{
    fs,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha384};

use crate::{Error, Migration, MigrationSet};

/// One tenant app: its label (the `app` column of `django_migrations`) and
/// its migrations folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DjangoApp {
    /// The app label.
    pub label: String,
    /// The folder holding its migration modules.
    pub dir: PathBuf,
}

impl DjangoApp {
    /// Reads `LABEL` (the folder `project/LABEL/migrations`, Django's default
    /// layout) or `LABEL=DIR` (an app elsewhere, such as `auth=…/site-packages/django/contrib/auth/migrations`).
    pub fn parse(spec: &str, project: &Path) -> Result<Self, Error> {
        let (label, dir) = match spec.split_once('=') {
            Some((label, dir)) => (label, PathBuf::from(dir)),
            None => (spec, project.join(spec).join("migrations")),
        };
        if label.is_empty()
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(Error::Config(format!(
                "Django app {spec:?}: expected LABEL or LABEL=MIGRATIONS_DIR, the label as Django records it"
            )));
        }
        Ok(Self {
            label: label.to_owned(),
            dir,
        })
    }
}

/// Every migration of `apps`, as Django's loader finds them: each `.py`
/// module of the app's migrations folder whose name does not start with
/// `_` or `~`.
pub fn load(apps: &[DjangoApp]) -> Result<MigrationSet, Error> {
    let mut migrations = Vec::new();
    for app in apps {
        let folder_error = |reason: String| Error::MigrationFolder {
            path: app.dir.clone(),
            reason,
        };
        let entries = fs::read_dir(&app.dir).map_err(|e| {
            folder_error(format!(
                "cannot read the migrations of Django app {:?}: {e}",
                app.label
            ))
        })?;
        for entry in entries {
            let entry = entry.map_err(|e| folder_error(e.to_string()))?;
            let file = entry.file_name();
            let Some(file) = file.to_str() else {
                return Err(folder_error(format!(
                    "{:?}: the name is not UTF-8",
                    entry.file_name()
                )));
            };
            let Some(name) = file.strip_suffix(".py") else {
                continue;
            };
            if name.starts_with(['_', '~', '.']) || !entry.path().is_file() {
                continue;
            }
            let text = fs::read_to_string(entry.path())
                .map_err(|e| folder_error(format!("{file}: {e}")))?;
            let replaces = replaced(&text)
                .map_err(|reason| folder_error(format!("{file}: {reason}")))?
                .into_iter()
                .map(|(app, name)| key_version(&app, &name))
                .collect();
            migrations.push(migration(&app.label, name, file, replaces));
        }
    }
    MigrationSet::from_migrations(migrations).map_err(|reason| Error::MigrationFolder {
        path: apps.first().map(|a| a.dir.clone()).unwrap_or_default(),
        reason,
    })
}

fn migration(app: &str, name: &str, file: &str, replaces: Vec<i64>) -> Migration {
    let human = name.trim_start_matches(|c: char| c.is_ascii_digit());
    Migration {
        key: format!("{app}.{name}"),
        version: key_version(app, name),
        description: human.trim_start_matches('_').replace('_', " "),
        file: format!("{app}/migrations/{file}"),
        sql: String::new(),
        checksum: Vec::new(),
        no_transaction: false,
        replaces,
    }
}

/// The number tenantgate keeps for the Django migration `app.name`: stable
/// across runs, ordered by the migration's leading number within an app.
/// Two migrations mapping to the same number are refused when the set is
/// loaded, never confused.
pub fn key_version(app: &str, name: &str) -> i64 {
    let bits = |text: &str| {
        let d = Sha384::digest(text.as_bytes());
        (i64::from(d[0]) << 16) | (i64::from(d[1]) << 8) | i64::from(d[2])
    };
    let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
    let number = digits.parse::<i64>().unwrap_or(0).min((1 << 14) - 1);
    (bits(app) << 38) | (number << 24) | bits(&format!("{app}.{name}"))
}

/// The `(app, name)` pairs of a migration module's `replaces = [...]`, or
/// none when it has no such attribute.
fn replaced(source: &str) -> Result<Vec<(String, String)>, String> {
    let Some(start) = source.find("replaces") else {
        return Ok(Vec::new());
    };
    let rest = source[start + "replaces".len()..].trim_start();
    let Some(rest) = rest.strip_prefix('=') else {
        return Ok(Vec::new());
    };
    let rest = rest.trim_start();
    if !rest.starts_with(['[', '(']) {
        return Err(
            "`replaces` is not a literal list; tenantgate reads it without running Python".into(),
        );
    }
    let mut strings = Vec::new();
    let mut depth = 0usize;
    let mut chars = rest.char_indices();
    while let Some((_, c)) = chars.next() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            '"' | '\'' => {
                let quote = c;
                let mut text = String::new();
                for (_, c) in chars.by_ref() {
                    if c == quote {
                        break;
                    }
                    text.push(c);
                }
                strings.push(text);
            }
            '#' => {
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    if depth != 0 || strings.len() % 2 != 0 {
        return Err("`replaces` is not a list of (app, name) pairs".into());
    }
    Ok(strings
        .chunks(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_a_squashed_migration_replaces() {
        let source = r#"
class Migration(migrations.Migration):
    replaces = [
        ("shop", "0001_initial"),  # the first
        ('shop', '0002_orders'),
    ]
    dependencies = []
"#;
        assert_eq!(
            replaced(source).unwrap(),
            [
                ("shop".to_owned(), "0001_initial".to_owned()),
                ("shop".to_owned(), "0002_orders".to_owned())
            ]
        );
        assert!(replaced("class Migration: pass").unwrap().is_empty());
        assert!(replaced("replaces = OTHER").is_err());
    }

    #[test]
    fn keys_map_to_stable_ordered_numbers() {
        let a = key_version("shop", "0001_initial");
        let b = key_version("shop", "0002_orders");
        assert!(a > 0 && b > a);
        assert_eq!(a, key_version("shop", "0001_initial"));
        assert_ne!(a, key_version("blog", "0001_initial"));
    }

    #[test]
    fn a_squashed_migration_counts_when_it_or_all_it_replaces_is_recorded() {
        let v = |n: &str| key_version("shop", n);
        let set = MigrationSet::from_migrations([
            migration("shop", "0001_initial", "0001_initial.py", vec![]),
            migration("shop", "0002_orders", "0002_orders.py", vec![]),
            migration(
                "shop",
                "0001_squashed_0002_orders",
                "0001_squashed_0002_orders.py",
                vec![v("0001_initial"), v("0002_orders")],
            ),
        ])
        .unwrap();
        let applied = |versions: &[i64]| {
            versions
                .iter()
                .map(|v| crate::AppliedMigration {
                    version: *v,
                    description: String::new(),
                    checksum: Vec::new(),
                })
                .collect::<Vec<_>>()
        };
        let both = applied(&[v("0001_initial"), v("0002_orders")]);
        assert!(set.compare(&both).missing.is_empty());
        let squashed = applied(&[v("0001_squashed_0002_orders")]);
        assert!(set.compare(&squashed).missing.is_empty());
        let half = applied(&[v("0001_initial")]);
        let missing: Vec<&str> = set
            .compare(&half)
            .missing
            .iter()
            .map(|m| m.key.as_str())
            .collect();
        assert_eq!(
            missing,
            ["shop.0001_squashed_0002_orders", "shop.0002_orders"]
        );
    }
}
