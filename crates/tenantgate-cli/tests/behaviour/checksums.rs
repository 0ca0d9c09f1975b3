//! Editing an applied migration is detected, never silently accepted.

use crate::{backend_tests, harness::Harness};

backend_tests!(edited_migration_is_reported_and_blocks_migrate);

async fn edited_migration_is_reported_and_blocks_migrate(h: Harness) {
    h.write_tables(2);
    h.create(&["t_a", "t_b"]).await;
    h.write(
        "0002_table_2.sql",
        "CREATE TABLE t2 (id bigint PRIMARY KEY, note text, edited int);",
    );
    h.write("0003_new.sql", "CREATE TABLE t3 (id int);");
    let run = h.run(&["verify", "--json"]).await;
    run.expect(1);
    let report = run.json();
    for t in report["tenants"].as_array().unwrap() {
        assert_eq!(t["changed"][0]["file"], "0002_table_2.sql", "{t}");
    }
    let run = h.run(&["migrate"]).await;
    run.expect(2);
    assert!(run.stderr.contains("0002_table_2.sql"), "{}", run.stderr);
    assert_eq!(h.ledger("t_a").await, [1, 2], "migrate refused to run");
}
