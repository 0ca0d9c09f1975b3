//! Migration sets loaded from a folder: versions, descriptions, checksums.
//!
//! A migration folder holds `tenant/` (applied to every tenant) and,
//! optionally, `shared/` (applied once to the shared schema). A sqlx
//! project's flat folder (`.sql` files directly in it, neither subfolder) is
//! read as it is: every file is a tenant migration. Files are named
//! `<version>_<description>.sql` as sqlx names them, or as sqlx's reversible
//! pairs `<version>_<description>.up.sql` / `.down.sql`: the `.up.sql` is
//! the migration, the `.down.sql` is checked to have its `.up.sql` and never
//! run (tenantgate is forward-only). Files that do not end in `.sql` and
//! hidden entries (`.name`) are ignored, and any other entry that cannot be
//! read as a migration is an error.
//!
//! ```
//! use tenantgate::MigrationSet;
//!
//! let set = MigrationSet::from_files([
//!     ("0002_add_notes.sql", "ALTER TABLE users ADD COLUMN notes text;"),
//!     ("0001_users.sql", "CREATE TABLE users (id bigint PRIMARY KEY);"),
//! ])
//! .unwrap();
//! let versions: Vec<i64> = set.iter().map(|m| m.version).collect();
//! assert_eq!(versions, [1, 2]);
//! assert_eq!(set.get(2).unwrap().description, "add notes");
//! assert!(MigrationSet::from_files([("users.sql", "")]).is_err(), "names carry a version");
//! ```

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha384};

use crate::{sql::Dialect, Error};

/// The first line that marks a migration to run outside a transaction.
pub const NO_TRANSACTION_MARKER: &str = "-- no-transaction";

/// A migration identified by version and file name, for reports and errors.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct MigrationRef {
    /// How the ledger kind names it: the version for tenantgate and sqlx
    /// ledgers, `app.name` for Django's.
    pub key: String,
    /// The version from the file name (for Django, a number derived from the key).
    pub version: i64,
    /// The description from the file name (underscores read as spaces).
    pub description: String,
    /// The file name.
    pub file: String,
}

/// One migration file, read and checksummed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// How the ledger kind names it: the version for tenantgate and sqlx
    /// ledgers, `app.name` for Django's.
    pub key: String,
    /// The version from the file name (for Django, a number derived from the key).
    pub version: i64,
    /// The description from the file name, underscores read as spaces.
    pub description: String,
    /// The file name, for messages.
    pub file: String,
    /// The file's text, without a leading byte order mark.
    pub sql: String,
    /// SHA-384 of the file's bytes (byte order mark included), as sqlx
    /// computes it.
    pub checksum: Vec<u8>,
    /// True when the file's first line is `-- no-transaction`.
    pub no_transaction: bool,
    /// The versions a squashed migration replaces (Django); it counts as
    /// applied when it or every one of them is recorded.
    pub replaces: Vec<i64>,
}

impl Migration {
    /// Builds a migration from a file name and its bytes, rejecting bad names
    /// and non-UTF-8 content.
    pub fn from_file(file: &str, bytes: &[u8]) -> Result<Self, String> {
        let stem = file
            .strip_suffix(".sql")
            .ok_or_else(|| format!("{file}: a migration file name ends in .sql"))?;
        if stem.ends_with(".down") {
            return Err(format!(
                "{file}: a .down.sql file is never applied; migrations are forward-only"
            ));
        }
        let stem = stem.strip_suffix(".up").unwrap_or(stem);
        let (version, description) = stem.split_once('_').ok_or_else(|| {
            format!("{file}: expected <version>_<description>.sql, e.g. 0001_create_users.sql")
        })?;
        let version: i64 = match version.parse() {
            Ok(v) if v >= 0 && version.bytes().all(|b| b.is_ascii_digit()) => v,
            _ => {
                return Err(format!(
                    "{file}: the version {version:?} is not a non-negative integer; expected <version>_<description>.sql"
                ))
            }
        };
        if description.is_empty() {
            return Err(format!(
                "{file}: the description after the version is empty"
            ));
        }
        let text =
            std::str::from_utf8(bytes).map_err(|e| format!("{file}: not UTF-8 text ({e})"))?;
        // A byte order mark is not SQL; the checksum still covers the file's bytes.
        let sql = text.strip_prefix('\u{feff}').unwrap_or(text).to_owned();
        Ok(Self {
            key: version.to_string(),
            version,
            description: description.replace('_', " "),
            file: file.to_owned(),
            no_transaction: sql.starts_with(NO_TRANSACTION_MARKER),
            checksum: Sha384::digest(bytes).to_vec(),
            sql,
            replaces: Vec::new(),
        })
    }

    /// This migration's identity for reports.
    pub fn reference(&self) -> MigrationRef {
        MigrationRef {
            key: self.key.clone(),
            version: self.version,
            description: self.description.clone(),
            file: self.file.clone(),
        }
    }
}

/// An ordered set of migrations with unique versions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationSet {
    by_version: BTreeMap<i64, Migration>,
}

impl MigrationSet {
    /// Loads every `.sql` file of `dir` (not recursing). Rejects badly named
    /// files and duplicate versions.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        Self::from_files(read_sql_files(dir)?).map_err(|reason| Error::MigrationFolder {
            path: dir.to_owned(),
            reason,
        })
    }

    /// Builds a set from (file name, contents) pairs, for migrations embedded
    /// in a binary. Rejects badly named files, duplicate versions and a
    /// `.down.sql` without its `.up.sql`.
    pub fn from_files<N: AsRef<str>, B: AsRef<[u8]>>(
        files: impl IntoIterator<Item = (N, B)>,
    ) -> Result<Self, String> {
        let mut by_version = BTreeMap::new();
        let mut downs = Vec::new();
        for (name, bytes) in files {
            let name = name.as_ref();
            if let Some(stem) = name.strip_suffix(".down.sql") {
                downs.push((name.to_owned(), format!("{stem}.up.sql")));
                continue;
            }
            let migration = Migration::from_file(name, bytes.as_ref())?;
            if let Some(other) = by_version.get(&migration.version) {
                let other: &Migration = other;
                return Err(format!(
                    "{} and {} share version {}; versions must be unique",
                    other.file, migration.file, migration.version
                ));
            }
            by_version.insert(migration.version, migration);
        }
        if let Some((down, up)) = downs
            .iter()
            .find(|(_, up)| !by_version.values().any(|m: &Migration| &m.file == up))
        {
            return Err(format!(
                "{down} has no {up}; a reversible migration is a pair, and only its .up.sql is applied"
            ));
        }
        Ok(Self { by_version })
    }

    /// The migrations in version order.
    pub fn iter(&self) -> impl Iterator<Item = &Migration> {
        self.by_version.values()
    }

    /// The migration with this version.
    pub fn get(&self, version: i64) -> Option<&Migration> {
        self.by_version.get(&version)
    }

    /// How many migrations the set holds.
    pub fn len(&self) -> usize {
        self.by_version.len()
    }

    /// True when the set holds no migration.
    pub fn is_empty(&self) -> bool {
        self.by_version.is_empty()
    }

    /// The highest version, if any.
    pub fn latest_version(&self) -> Option<i64> {
        self.by_version.keys().next_back().copied()
    }

    /// How a ledger stands against this set: what it lacks, what it holds
    /// from files that changed since, and what it holds that has no file.
    pub fn compare<'a>(&'a self, ledger: &[crate::AppliedMigration]) -> LedgerDiff<'a> {
        let recorded = |version: i64| ledger.iter().any(|a| a.version == version);
        LedgerDiff {
            missing: self.iter().filter(|m| !self.holds(m, recorded)).collect(),
            changed: ledger
                .iter()
                .filter_map(|a| self.get(a.version).filter(|m| m.checksum != a.checksum))
                .collect(),
            unknown: ledger
                .iter()
                .filter(|a| self.get(a.version).is_none() && !self.is_replaced(a.version))
                .map(|a| a.version)
                .collect(),
        }
    }

    /// Whether a ledger for which `recorded` says which versions it holds
    /// holds `m`: recorded itself, or (a squashed migration) every
    /// migration it replaces recorded, or (a replaced one) a migration of
    /// this set that replaces it recorded.
    pub fn holds(&self, m: &Migration, recorded: impl Fn(i64) -> bool) -> bool {
        recorded(m.version)
            || (!m.replaces.is_empty() && m.replaces.iter().all(|v| recorded(*v)))
            || self
                .iter()
                .any(|s| s.replaces.contains(&m.version) && recorded(s.version))
    }

    /// Whether a migration of this set replaces `version`.
    fn is_replaced(&self, version: i64) -> bool {
        self.iter().any(|m| m.replaces.contains(&version))
    }

    /// Builds a set from migrations read elsewhere (Django's), rejecting two
    /// with the same version.
    pub fn from_migrations(
        migrations: impl IntoIterator<Item = Migration>,
    ) -> Result<Self, String> {
        let mut by_version = BTreeMap::new();
        for m in migrations {
            if let Some(other) = by_version.insert(m.version, m) {
                return Err(format!(
                    "{} and {} map to the same number; rename one of them",
                    other.key, by_version[&other.version].key
                ));
            }
        }
        Ok(Self { by_version })
    }

    /// Refuses, before any SQL runs, a transactional migration that ends,
    /// commits, rolls back or opens a transaction at top level (see
    /// [`crate::sql::transaction_control`]), or that cannot be read as SQL.
    /// `-- no-transaction` migrations are exempt: they run outside a
    /// transaction by definition.
    pub fn refuse_transaction_control(&self, dialect: Dialect) -> Result<(), Error> {
        for m in self.iter().filter(|m| !m.no_transaction) {
            match crate::sql::transaction_control(dialect, &m.sql) {
                Ok(None) => {}
                Ok(Some(found)) => {
                    return Err(Error::TransactionControl {
                        file: m.file.clone(),
                        line: found.line,
                        statement: found.statement,
                    })
                }
                Err(unreadable) => {
                    return Err(Error::UnreadableSql {
                        file: m.file.clone(),
                        line: unreadable.line,
                        message: unreadable.message,
                    })
                }
            }
        }
        Ok(())
    }

    /// A copy holding only the migrations up to and including `version`.
    pub fn up_to(&self, version: i64) -> Self {
        Self {
            by_version: self
                .by_version
                .range(..=version)
                .map(|(v, m)| (*v, m.clone()))
                .collect(),
        }
    }
}

/// A ledger compared with a migration set; see [`MigrationSet::compare`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerDiff<'a> {
    /// Migrations of the set the ledger lacks, in version order.
    pub missing: Vec<&'a Migration>,
    /// Applied migrations whose file changed since they were applied.
    pub changed: Vec<&'a Migration>,
    /// Applied versions that have no file in the set.
    pub unknown: Vec<i64>,
}

/// A named, idempotent data fix run across the fleet
/// (`backfills/<name>.sql`; the name is the file stem).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Backfill {
    /// The file stem: lowercase ASCII letters, digits, `-` and `_`.
    pub name: String,
    /// The file's text.
    #[serde(skip)]
    pub sql: String,
    /// SHA-384 of the file's bytes.
    #[serde(skip)]
    pub checksum: Vec<u8>,
}

impl Backfill {
    /// Builds a backfill from a file name and its bytes.
    pub fn from_file(file: &str, bytes: &[u8]) -> Result<Self, String> {
        let name = file
            .strip_suffix(".sql")
            .ok_or_else(|| format!("{file}: a backfill file name ends in .sql"))?;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "{file}: a backfill is named with lowercase ASCII letters, digits, '-' and '_'"
            ));
        }
        let sql = std::str::from_utf8(bytes)
            .map_err(|e| format!("{file}: not UTF-8 text ({e})"))?
            .to_owned();
        Ok(Self {
            name: name.to_owned(),
            sql,
            checksum: Sha384::digest(bytes).to_vec(),
        })
    }
}

/// Why an entry of a migration folder cannot be read as a migration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryProblem {
    /// Its name is not UTF-8, so it cannot be told whether it is a migration.
    #[error("its name is not UTF-8")]
    NameNotUtf8,
    /// A symbolic link whose target does not exist (or a loop of links).
    #[error("it is a symbolic link to nothing (or a loop of links)")]
    BrokenLink,
    /// A directory or another kind of entry named like a migration.
    #[error("it is named like a migration but is not a regular file")]
    NotAFile,
    /// The file exists but cannot be read.
    #[error("it cannot be read: {0}")]
    Unreadable(String),
    /// The file holds a NUL byte: SQLite would silently ignore what follows
    /// and PostgreSQL refuses it.
    #[error("it holds a NUL byte at byte offset {0}")]
    NulByte(usize),
}

/// Reads every `.sql` file of `dir` as (file name, bytes), not recursing.
/// Hidden entries (names starting with `.`, such as editor lock files) and
/// names not ending in `.sql` are ignored; any other entry that cannot be
/// read as a migration is an error, never skipped.
fn read_sql_files(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let entry_error = |path: &Path, problem: EntryProblem| Error::MigrationEntry {
        path: path.to_owned(),
        problem,
    };
    let entries = fs::read_dir(dir).map_err(|e| Error::MigrationFolder {
        path: dir.to_owned(),
        reason: format!("cannot read: {e}"),
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| entry_error(dir, EntryProblem::Unreadable(e.to_string())))?;
        let path = entry.path();
        let file_name = entry.file_name();
        if file_name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let Some(name) = file_name.to_str().map(str::to_owned) else {
            return Err(entry_error(&path, EntryProblem::NameNotUtf8));
        };
        if !name.ends_with(".sql") {
            continue;
        }
        let metadata = match fs::metadata(&path) {
            Ok(metadata) => metadata,
            Err(_) if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) => {
                return Err(entry_error(&path, EntryProblem::BrokenLink))
            }
            Err(e) => return Err(entry_error(&path, EntryProblem::Unreadable(e.to_string()))),
        };
        if !metadata.is_file() {
            return Err(entry_error(&path, EntryProblem::NotAFile));
        }
        let bytes = fs::read(&path)
            .map_err(|e| entry_error(&path, EntryProblem::Unreadable(e.to_string())))?;
        if let Some(offset) = bytes.iter().position(|b| *b == 0) {
            return Err(entry_error(&path, EntryProblem::NulByte(offset)));
        }
        files.push((name, bytes));
    }
    files.sort();
    Ok(files)
}

/// How a migration folder is laid out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FolderLayout {
    /// `tenant/` and optionally `shared/`.
    #[default]
    Split,
    /// A sqlx project's flat folder: `.sql` files directly in it, all of
    /// them tenant migrations, no shared set.
    Flat,
}

/// A migration folder: the shared set, the tenant set and the backfills.
#[derive(Debug, Clone, Default)]
pub struct MigrationFolder {
    /// Where it was loaded from.
    pub root: PathBuf,
    /// Whether it was read as `tenant/` + `shared/` or as a flat sqlx folder.
    pub layout: FolderLayout,
    /// Migrations for the shared (public) schema; empty when `shared/` is absent.
    pub shared: MigrationSet,
    /// Migrations applied to every tenant.
    pub tenant: MigrationSet,
    /// Backfills by name; empty when `backfills/` is absent.
    pub backfills: BTreeMap<String, Backfill>,
}

impl MigrationFolder {
    /// [`MigrationSet::refuse_transaction_control`] for the shared and
    /// tenant sets.
    pub fn refuse_transaction_control(&self, dialect: Dialect) -> Result<(), Error> {
        self.shared.refuse_transaction_control(dialect)?;
        self.tenant.refuse_transaction_control(dialect)
    }

    /// Loads `root/shared` (optional) and `root/tenant`, or, when `root`
    /// has neither subfolder but `.sql` files, every file of `root` as the
    /// tenant set ([`FolderLayout::Flat`]). `.sql` files beside `tenant/` or
    /// `shared/` are an error: they would belong to neither set.
    pub fn load(root: impl AsRef<Path>) -> Result<Self, Error> {
        let root = root.as_ref();
        let tenant_dir = root.join("tenant");
        let shared_dir = root.join("shared");
        let split = tenant_dir.is_dir() || shared_dir.is_dir();
        let top_level = if root.is_dir() {
            read_sql_files(root)?
        } else {
            Vec::new()
        };
        let (layout, tenant, shared) = match (split, top_level.is_empty()) {
            (false, false) => (
                FolderLayout::Flat,
                MigrationSet::from_files(top_level).map_err(|reason| Error::MigrationFolder {
                    path: root.to_owned(),
                    reason,
                })?,
                MigrationSet::default(),
            ),
            (true, false) => {
                return Err(Error::MigrationFolder {
                    path: root.to_owned(),
                    reason: format!(
                        "holds {} beside tenant/ or shared/; move it into one of them (a flat sqlx folder has neither subfolder)",
                        top_level[0].0
                    ),
                })
            }
            (_, true) if !tenant_dir.is_dir() => {
                return Err(Error::MigrationFolder {
                    path: tenant_dir,
                    reason: "missing; a migration folder holds tenant/ (and optionally shared/), or is a flat sqlx folder of .sql files".into(),
                })
            }
            (_, true) => (
                FolderLayout::Split,
                MigrationSet::load(&tenant_dir)?,
                if shared_dir.is_dir() {
                    MigrationSet::load(&shared_dir)?
                } else {
                    MigrationSet::default()
                },
            ),
        };
        let backfills_dir = root.join("backfills");
        let mut backfills = BTreeMap::new();
        if backfills_dir.is_dir() {
            for (file, bytes) in read_sql_files(&backfills_dir)? {
                let backfill = Backfill::from_file(&file, &bytes).map_err(|reason| {
                    Error::MigrationFolder {
                        path: backfills_dir.clone(),
                        reason,
                    }
                })?;
                backfills.insert(backfill.name.clone(), backfill);
            }
        }
        Ok(Self {
            root: root.to_owned(),
            layout,
            shared,
            tenant,
            backfills,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sqlx_style_names() {
        let m = Migration::from_file("0003_auth_initial.sql", b"-- only a comment\n").unwrap();
        assert_eq!((m.version, m.description.as_str()), (3, "auth initial"));
        assert_eq!(m.checksum.len(), 48);
        assert!(!m.no_transaction);
        let m = Migration::from_file(
            "20240101_idx.sql",
            b"-- no-transaction\nCREATE INDEX CONCURRENTLY x ON y (z);",
        )
        .unwrap();
        assert!(m.no_transaction);
    }

    #[test]
    fn rejects_bad_names() {
        for name in [
            "abc.sql",
            "x_abc.sql",
            "-1_a.sql",
            "0001_.sql",
            "0001.sql",
            "0001_a.down.sql",
            "0001_.up.sql",
            "+1_a.sql",
        ] {
            assert!(Migration::from_file(name, b"").is_err(), "{name} accepted");
        }
        assert!(Migration::from_file("0001_a.sql", &[0xff, 0xfe]).is_err());
    }

    #[test]
    fn a_byte_order_mark_is_not_sql_but_stays_in_the_checksum() {
        let bytes = "\u{feff}-- no-transaction\nCREATE INDEX CONCURRENTLY i ON t (x);".as_bytes();
        let m = Migration::from_file("0002_idx.sql", bytes).unwrap();
        assert!(m.sql.starts_with("-- no-transaction"));
        assert!(m.no_transaction);
        assert_eq!(m.checksum, Sha384::digest(bytes).to_vec());
    }

    #[test]
    fn rejects_duplicate_versions_and_orders_the_rest() {
        let err = MigrationSet::from_files([("1_a.sql", ""), ("01_b.sql", "")]).unwrap_err();
        assert!(err.contains("share version 1"), "{err}");
        let set = MigrationSet::from_files([("10_b.sql", ""), ("2_a.sql", "")]).unwrap();
        assert_eq!(set.iter().map(|m| m.version).collect::<Vec<_>>(), [2, 10]);
    }

    #[test]
    fn reads_sqlx_reversible_pairs_as_their_up_file() {
        let set = MigrationSet::from_files([
            ("0001_users.up.sql", "CREATE TABLE users (id int);"),
            ("0001_users.down.sql", "DROP TABLE users;"),
            ("0002_notes.sql", "CREATE TABLE notes (id int);"),
        ])
        .unwrap();
        let first = set.get(1).unwrap();
        assert_eq!(first.description, "users");
        assert_eq!(first.sql, "CREATE TABLE users (id int);");
        assert_eq!(
            first.checksum,
            Sha384::digest(b"CREATE TABLE users (id int);").to_vec()
        );
        assert_eq!(set.len(), 2);
        let err = MigrationSet::from_files([("0003_x.down.sql", "")]).unwrap_err();
        assert!(err.contains("has no 0003_x.up.sql"), "{err}");
        let err =
            MigrationSet::from_files([("0001_a.up.sql", ""), ("0001_a.sql", "")]).unwrap_err();
        assert!(err.contains("share version 1"), "{err}");
    }

    #[test]
    fn reads_a_flat_sqlx_folder_as_the_tenant_set() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("20240101000000_users.sql"), "select 1;").unwrap();
        fs::write(dir.path().join("20240102000000_notes.up.sql"), "select 2;").unwrap();
        fs::write(
            dir.path().join("20240102000000_notes.down.sql"),
            "select 3;",
        )
        .unwrap();
        let folder = MigrationFolder::load(dir.path()).unwrap();
        assert_eq!(folder.layout, FolderLayout::Flat);
        assert_eq!(folder.tenant.len(), 2);
        assert!(folder.shared.is_empty());
        fs::create_dir(dir.path().join("tenant")).unwrap();
        let err = MigrationFolder::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("beside tenant/ or shared/"), "{err}");
        let empty = tempfile::tempdir().unwrap();
        let err = MigrationFolder::load(empty.path()).unwrap_err().to_string();
        assert!(err.contains("flat sqlx folder"), "{err}");
    }

    #[test]
    fn loads_a_folder_ignoring_other_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("tenant")).unwrap();
        fs::write(dir.path().join("tenant/0001_a.sql"), "select 1;").unwrap();
        fs::write(dir.path().join("tenant/README.md"), "notes").unwrap();
        let folder = MigrationFolder::load(dir.path()).unwrap();
        assert_eq!(folder.tenant.len(), 1);
        assert!(folder.shared.is_empty());
        fs::write(dir.path().join("tenant/bad.sql"), "").unwrap();
        assert!(MigrationFolder::load(dir.path()).is_err());
    }
}
