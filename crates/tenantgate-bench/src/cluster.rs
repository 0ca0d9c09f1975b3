//! Databases in the benchmark cluster: create, clone, drop.

use anyhow::Context;
use tokio_postgres::{Client, NoTls};

/// The cluster the benchmark works in.
pub(crate) struct Cluster {
    admin: Client,
    base_url: String,
}

impl Cluster {
    pub(crate) async fn connect(base_url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            admin: connect(base_url).await?,
            base_url: base_url.to_owned(),
        })
    }

    /// The URL of database `db` in the cluster.
    pub(crate) fn url(&self, db: &str) -> String {
        let (before, query) = self
            .base_url
            .split_once('?')
            .map_or((self.base_url.as_str(), None), |(b, q)| (b, Some(q)));
        let root = &before[..before.rfind('/').unwrap_or(before.len())];
        match query {
            Some(q) => format!("{root}/{db}?{q}"),
            None => format!("{root}/{db}"),
        }
    }

    /// A fresh, empty database (dropped first if a previous run left it).
    pub(crate) async fn create(&self, db: &str) -> anyhow::Result<String> {
        self.drop(db).await?;
        self.admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .with_context(|| format!("create {db}"))?;
        Ok(self.url(db))
    }

    /// A copy of `template` (which must have no open connections).
    pub(crate) async fn clone_of(&self, template: &str, db: &str) -> anyhow::Result<String> {
        self.drop(db).await?;
        // Connections the last user of the template left closing.
        self.admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                &[&template],
            )
            .await?;
        self.admin
            // FILE_COPY copies the files instead of WAL-logging every block
            // (PostgreSQL 15's default), minutes faster for a large fleet.
            .batch_execute(&format!(
                "CREATE DATABASE {db} TEMPLATE {template} STRATEGY = FILE_COPY"
            ))
            .await
            .with_context(|| format!("clone {template} into {db}"))?;
        Ok(self.url(db))
    }

    pub(crate) async fn drop(&self, db: &str) -> anyhow::Result<()> {
        self.admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .await?;
        Ok(())
    }

    /// Flushes dirty buffers so one side's writes are not paid by the next.
    pub(crate) async fn checkpoint(&self) -> anyhow::Result<()> {
        self.admin.batch_execute("CHECKPOINT").await?;
        Ok(())
    }
}

pub(crate) async fn connect(url: &str) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connect {url}"))?;
    tokio::spawn(connection);
    Ok(client)
}
