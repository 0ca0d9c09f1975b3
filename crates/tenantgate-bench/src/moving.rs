//! Moving one tenant of the saas-tenant fixture, filled with data, between
//! two databases of the cluster (placements `default` and `dst`), against
//! the floor a team would reach for: `pg_dump -Fc -n <schema> | pg_restore`
//! of the same schema into a fresh database. Rates are the schema's size on
//! disk (tables, indexes, TOAST) per second, so both sides divide the same
//! number.

use std::{path::Path, process::Stdio, time::Instant};

use anyhow::Context;
use serde_json::json;
use tenantgate::{
    backend::Limits,
    moves::{self, MoveOptions},
    placement::DEFAULT_PLACEMENT,
    provision, MigrationFolder, TenantName,
};

use crate::{
    cluster::{self, Cluster},
    scenarios::{median, progress},
};

/// The rows that fill the tenant: users, conversations, messages (about
/// 260 bytes each, most of the size), organisations and their audit logs.
fn fill_sql(schema: &str, megabytes: usize) -> String {
    let messages = megabytes * 3_000;
    format!(
        "SET search_path TO {schema};
         INSERT INTO auth_user (password, last_login, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined)
           SELECT 'x', now(), false, 'user' || i, 'First', 'Last', 'u' || i || '@example.com', false, true, now() FROM generate_series(1, 1000) i;
         INSERT INTO messages_sys_conversation (title, created_at) SELECT 'conversation ' || i, now() FROM generate_series(1, 10000) i;
         INSERT INTO messages_sys_message (body, created_at, is_read, conversation_id, sender_id)
           SELECT repeat(md5(i::text), 7), now(), i % 3 = 0, 1 + i % 10000, 1 + i % 1000 FROM generate_series(1, {messages}) i;
         INSERT INTO orgs_organization (name, slug, created_at) SELECT 'org ' || i, 'org-' || i, now() FROM generate_series(1, 100) i;
         INSERT INTO orgs_auditlog (action, data, created_at, actor_id, organization_id)
           SELECT 'login', jsonb_build_object('ip', '10.0.0.' || i % 250, 'n', i), now(), 1 + i % 1000, 1 + i % 100
             FROM generate_series(1, {audits}) i;
         ANALYZE;",
        audits = messages / 10,
    )
}

/// Runs the move scenario for a tenant of about `megabytes` of data.
pub(crate) async fn moving(
    cluster: &Cluster,
    fixture: &MigrationFolder,
    megabytes: usize,
    repeat: usize,
) -> anyhow::Result<()> {
    let bindir = std::env::var("TENANTGATE_PG_BINDIR").unwrap_or_default();
    let (pg_dump, pg_restore) = (
        Path::new(&bindir).join("pg_dump"),
        Path::new(&bindir).join("pg_restore"),
    );
    let source = cluster.create("bench_move_src").await?;
    let target = cluster.create("bench_move_dst").await?;
    let backend = tenantgate::connect(&source).await?;
    backend.prepare().await?;
    backend.add_placement("dst", &target).await?;
    let tenant = TenantName::parse("big")?;
    let limits = Limits::default();
    provision::create_tenant_on(
        backend.as_ref(),
        fixture,
        Some(DEFAULT_PLACEMENT),
        &tenant,
        &[],
        &limits,
    )
    .await?;
    progress(&format!("move: filling a tenant with about {megabytes} MB"));
    cluster::connect(&source)
        .await?
        .batch_execute(&fill_sql("big", megabytes))
        .await
        .context("fill the tenant")?;
    let size: i64 = cluster::connect(&source)
        .await?
        .query_one(
            "SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'big' AND c.relkind IN ('r', 'm')",
            &[],
        )
        .await?
        .get(0);
    let mb = size as f64 / 1e6;
    let (mut ours, mut floor, mut streamed) = (Vec::new(), Vec::new(), 0);
    let mut holder = (DEFAULT_PLACEMENT, source.clone());
    for round in 1..=repeat {
        progress(&format!(
            "move: round {round}/{repeat}: pg_dump | pg_restore"
        ));
        cluster.checkpoint().await?;
        let scratch = cluster.create("bench_move_scratch").await?;
        let started = Instant::now();
        let pipeline = format!(
            "{} -Fc -n big '{}' | {} --no-owner -d '{}'",
            pg_dump.display(),
            holder.1,
            pg_restore.display(),
            scratch
        );
        let status = tokio::process::Command::new("bash")
            .args(["-o", "pipefail", "-c", &pipeline])
            .stdin(Stdio::null())
            .status()
            .await
            .context("run pg_dump | pg_restore")?;
        anyhow::ensure!(status.success(), "pg_dump | pg_restore failed");
        floor.push(started.elapsed());
        cluster.drop("bench_move_scratch").await?;

        let to = if holder.0 == DEFAULT_PLACEMENT {
            "dst"
        } else {
            DEFAULT_PLACEMENT
        };
        progress(&format!(
            "move: round {round}/{repeat}: tenants move to {to}"
        ));
        cluster.checkpoint().await?;
        let started = Instant::now();
        let report = moves::move_tenant(
            backend.as_ref(),
            fixture,
            &tenant,
            to,
            MoveOptions::default(),
            &limits,
        )
        .await?;
        ours.push(started.elapsed());
        streamed = report.bytes;
        holder = (
            to,
            if to == "dst" {
                target.clone()
            } else {
                source.clone()
            },
        );
    }
    let (ours_s, floor_s) = (median(&ours).as_secs_f64(), median(&floor).as_secs_f64());
    let rate = |seconds: f64| (mb / seconds * 10.0).round() / 10.0;
    println!(
        "{}",
        json!({
            "scenario": "move",
            "schema_mb": (mb * 10.0).round() / 10.0,
            "copy_stream_mb": (streamed as f64 / 1e5).round() / 10.0,
            "tenantgate_s": (ours_s * 1000.0).round() / 1000.0,
            "tenantgate_mb_per_s": rate(ours_s),
            "floor": "pg_dump -Fc -n big | pg_restore",
            "floor_s": (floor_s * 1000.0).round() / 1000.0,
            "floor_mb_per_s": rate(floor_s),
            "ratio": ((ours_s / floor_s) * 1000.0).round() / 1000.0,
            "tenantgate_samples_s": ours.iter().map(|d| d.as_secs_f64()).collect::<Vec<_>>(),
            "floor_samples_s": floor.iter().map(|d| d.as_secs_f64()).collect::<Vec<_>>(),
        })
    );
    cluster.drop("bench_move_src").await?;
    cluster.drop("bench_move_dst").await?;
    Ok(())
}
