//! The app's migrations, embedded at build time.

use std::collections::BTreeMap;

use tenantgate::{migrations::Backfill, readiness::RequiredSet, MigrationFolder, MigrationSet};

macro_rules! files {
    ($dir:literal: $($file:literal),* $(,)?) => {
        [$(($file, include_str!(concat!("../../../migrations/postgres/", $dir, "/", $file)))),*]
    };
}

const SHARED: [(&str, &str); 1] = files!("shared": "0001_demo_languages.sql");
const TENANT: [(&str, &str); 2] = files!("tenant": "0001_users.sql", "0002_messages.sql");
const BACKFILLS: [(&str, &str); 1] = files!("backfills": "user-statuses.sql");

/// The migration folder the app was built with.
pub fn folder() -> MigrationFolder {
    let set = |files: &[(&str, &str)]| {
        MigrationSet::from_files(files.iter().copied())
            .expect("the embedded migrations are well-formed")
    };
    let backfills: BTreeMap<String, Backfill> = BACKFILLS
        .iter()
        .map(|(file, sql)| {
            let backfill = Backfill::from_file(file, sql.as_bytes())
                .expect("the embedded backfills are well-formed");
            (backfill.name.clone(), backfill)
        })
        .collect();
    MigrationFolder {
        root: "migrations/postgres".into(),
        shared: set(&SHARED),
        tenant: set(&TENANT),
        backfills,
    }
}

/// Every embedded migration is required by the running code.
pub fn required_set() -> RequiredSet {
    RequiredSet::from_folder(&folder())
}

#[cfg(test)]
mod tests {
    #[test]
    fn embedded_migrations_load() {
        let folder = super::folder();
        assert_eq!(folder.tenant.len(), 2);
        assert!(folder.backfills.contains_key("user-statuses"));
    }
}

#[cfg(test)]
mod drift_tests {
    #[test]
    fn embedded_set_matches_the_folder_on_disk() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/postgres");
        let on_disk = tenantgate::MigrationFolder::load(dir).unwrap();
        let embedded = super::folder();
        assert_eq!(
            on_disk.tenant, embedded.tenant,
            "embed every file of migrations/postgres/tenant"
        );
        assert_eq!(
            on_disk.shared, embedded.shared,
            "embed every file of migrations/postgres/shared"
        );
        assert_eq!(
            on_disk.backfills, embedded.backfills,
            "embed every file of migrations/postgres/backfills"
        );
    }
}
