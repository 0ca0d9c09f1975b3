//! The app's migrations, embedded at build time.

use std::collections::BTreeMap;

use tenantgate::{migrations::Backfill, readiness::RequiredSet, MigrationFolder, MigrationSet};

macro_rules! files {
    ($store:literal, $dir:literal: $($file:literal),* $(,)?) => {
        [$(($file, include_str!(concat!("../../../migrations/", $store, "/", $dir, "/", $file)))),*]
    };
}

/// One store's migration files: shared, tenant, backfills.
struct Files {
    root: &'static str,
    shared: [(&'static str, &'static str); 1],
    tenant: [(&'static str, &'static str); 2],
    backfills: [(&'static str, &'static str); 1],
}

const POSTGRES: Files = Files {
    root: "migrations/postgres",
    shared: files!("postgres", "shared": "0001_demo_languages.sql"),
    tenant: files!("postgres", "tenant": "0001_users.sql", "0002_messages.sql"),
    backfills: files!("postgres", "backfills": "user-statuses.sql"),
};

const SQLITE: Files = Files {
    root: "migrations/sqlite",
    shared: files!("sqlite", "shared": "0001_demo_languages.sql"),
    tenant: files!("sqlite", "tenant": "0001_users.sql", "0002_messages.sql"),
    backfills: files!("sqlite", "backfills": "user-statuses.sql"),
};

/// The kind of store the app runs on, which picks its migration set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// One schema per tenant in a PostgreSQL database.
    Postgres,
    /// One database file per tenant in a data folder.
    Sqlite,
}

impl Store {
    /// The store a database URL names, or `None` when it is neither.
    pub fn for_url(url: &str) -> Option<Self> {
        if tenantgate::backend::is_postgres(url) {
            Some(Store::Postgres)
        } else if tenantgate::backend::sqlite_folder(url).is_some() {
            Some(Store::Sqlite)
        } else {
            None
        }
    }

    /// The subfolder of `migrations/` holding this store's set.
    pub fn folder_name(self) -> &'static str {
        match self {
            Store::Postgres => "postgres",
            Store::Sqlite => "sqlite",
        }
    }

    fn files(self) -> &'static Files {
        match self {
            Store::Postgres => &POSTGRES,
            Store::Sqlite => &SQLITE,
        }
    }
}

/// The migration folder the app was built with, for `store`.
pub fn folder(store: Store) -> MigrationFolder {
    let files = store.files();
    let set = |files: &[(&str, &str)]| {
        MigrationSet::from_files(files.iter().copied())
            .expect("the embedded migrations are well-formed")
    };
    let backfills: BTreeMap<String, Backfill> = files
        .backfills
        .iter()
        .map(|(file, sql)| {
            let backfill = Backfill::from_file(file, sql.as_bytes())
                .expect("the embedded backfills are well-formed");
            (backfill.name.clone(), backfill)
        })
        .collect();
    MigrationFolder {
        root: files.root.into(),
        shared: set(&files.shared),
        tenant: set(&files.tenant),
        backfills,
        ..MigrationFolder::default()
    }
}

/// Every embedded migration of `store`'s set is required by the running code.
pub fn required_set(store: Store) -> RequiredSet {
    RequiredSet::from_folder(&folder(store))
}

#[cfg(test)]
mod tests {
    use super::Store;

    #[test]
    fn embedded_sets_match_the_folders_on_disk() {
        for store in [Store::Postgres, Store::Sqlite] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../migrations")
                .join(store.folder_name());
            let on_disk = tenantgate::MigrationFolder::load(&dir).unwrap();
            let embedded = super::folder(store);
            let name = store.folder_name();
            assert_eq!(
                on_disk.tenant, embedded.tenant,
                "embed every file of migrations/{name}/tenant"
            );
            assert_eq!(
                on_disk.shared, embedded.shared,
                "embed every file of migrations/{name}/shared"
            );
            assert_eq!(
                on_disk.backfills, embedded.backfills,
                "embed every file of migrations/{name}/backfills"
            );
            assert!(embedded.backfills.contains_key("user-statuses"));
        }
    }
}
