//! The object index partitioned by (zone, generation), on both backends: a Clear drops its generations'
//! tables, a node holding a stale generation never reads a retired one, and a database from before
//! partitions is converted at open.

use super::*;
use crate::storage::Access;

conformance!(
    completing_a_clear_drops_its_generations_tables,
    a_node_that_remembers_a_retired_generation_reads_the_current_one,
    an_index_from_before_partitions_is_converted_at_open,
    retention_evicts_idle_entries_of_each_zones_current_generation_only,
);

/// Whether the partition of `zone`'s `generation` exists.
async fn has_table(s: &SqlStore, zone: &ZoneId, generation: i64) -> bool {
    match sqlx::query(sql(format!("SELECT 1 FROM {} LIMIT 1", objects_table(zone, generation))))
        .fetch_all(&s.read)
        .await
    {
        Ok(_) => true,
        Err(e) if crate::storage::sql::partitions::is_missing_table(&e) => false,
        Err(e) => panic!("{e}"),
    }
}

/// A second handle with a generation cache of its own (SQLite: the same file opened again).
async fn second_handle(f: &Fixture) -> SqlStore {
    match &f.url {
        Some(_) => f.other_node().await,
        None => SqlStore::open_sqlite(&f._dir.path().join("control.db")).await.unwrap(),
    }
}

async fn completing_a_clear_drops_its_generations_tables(f: Fixture) {
    let s = &f.store;
    let z = cleared_zone(s, "drop.example", 50).await;
    assert!(has_table(s, &z, 1).await && has_table(s, &z, 2).await);
    let lease = s.claim_clear("node-a", Duration::from_secs(30)).await.unwrap().unwrap();
    // No batches: completion forgets all 50 entries at once, by dropping the table.
    assert_eq!(s.complete_clear(&lease).await.unwrap(), 50);
    assert!(!has_table(s, &z, 1).await, "the cleared generation's table is dropped");
    assert!(has_table(s, &z, 2).await, "the current generation's table stays");
    let op = s.latest_clear(&z).await.unwrap().unwrap();
    assert!(op.end_ts.is_some());
    assert_eq!((op.progress.objects_deleted(), op.progress.objects_remaining), (50, 0));
    assert_eq!(rows_below(s, &z, 2).await, (0, 0));
    // Completing again (a reply lost) forgets nothing and fails nothing.
    assert_eq!(s.complete_clear(&lease).await.unwrap(), 0);
    // Writes to the retired generation are moot, not errors.
    let old = entry(&z, 1, "k0", 10);
    assert!(!s.remove_if_blob(&z, 1, &old.key_hash, &old.blob).await.unwrap());
    assert_eq!(s.update_meta(&z, 1, &old.key_hash, &old.blob, b"m", 0).await.unwrap(), None);
    s.record_access(&[Access {
        zone_id: z.clone(),
        generation: 1,
        key_hash: old.key_hash.clone(),
        at: Timestamp::now(),
    }])
    .await
    .unwrap();
}

async fn a_node_that_remembers_a_retired_generation_reads_the_current_one(f: Fixture) {
    let s = &f.store;
    let other = second_handle(&f).await;
    assert!(!Arc::ptr_eq(&other.generations, &s.generations), "a handle with a cache of its own");
    let z = zone(s, "stale.example").await;
    set_reserve(s, &z, true).await;
    let old = entry(&z, 1, "k", 10);
    record(s, &old).await;
    assert_eq!(other.lookup(&z, &old.key_hash).await.unwrap().map(|e| e.generation), Some(1));
    // A Clear elsewhere: `other` still remembers generation 1, whose table still exists; the statement
    // sees the zone at 2 and reads again there.
    set_reserve(s, &z, false).await;
    start(s, &z).await;
    assert!(other.lookup(&z, &old.key_hash).await.unwrap().is_none(), "a retired entry is never read");
    let lease = s.claim_clear("node-a", Duration::from_secs(30)).await.unwrap().unwrap();
    s.complete_clear(&lease).await.unwrap();
    set_reserve(s, &z, true).await;
    let new = entry(&z, 2, "k", 20);
    record(s, &new).await;
    let third = second_handle(&f).await;
    assert_eq!(third.lookup(&z, &new.key_hash).await.unwrap().map(|e| e.size), Some(20));
    // One more Clear, completed, and a write: `third` remembers 2, whose table is now dropped, so its
    // statement fails on the missing table and it reads the zone's generation again.
    set_reserve(s, &z, false).await;
    start(s, &z).await;
    let lease = s.claim_clear("node-a", Duration::from_secs(30)).await.unwrap().unwrap();
    s.complete_clear(&lease).await.unwrap();
    set_reserve(s, &z, true).await;
    let newer = entry(&z, 3, "k", 30);
    record(s, &newer).await;
    assert_eq!(third.lookup(&z, &newer.key_hash).await.unwrap().map(|e| (e.generation, e.size)), Some((3, 30)));
}

async fn an_index_from_before_partitions_is_converted_at_open(f: Fixture) {
    let s = &f.store;
    let z = zone(s, "legacy.example").await;
    // What an earlier version left: one `objects` table, a zone at generation 3 with a Clear of generations
    // 1 and 2 still to reclaim, entries in 2 and 3, and 1's entries all forgotten (its counts row stays
    // until the Clear completes).
    let meta = if s.dialect == Dialect::Sqlite { "BLOB" } else { "BYTEA" };
    let mut tx = s.begin_write().await.unwrap();
    for statement in [
        format!("DROP TABLE {}", objects_table(&z, 1)),
        "DELETE FROM generations".to_owned(),
        format!(
            "CREATE TABLE objects (zone_id TEXT NOT NULL, generation BIGINT NOT NULL, key_hash TEXT NOT NULL,
             cache_key TEXT NOT NULL, blob TEXT NOT NULL, size BIGINT NOT NULL, meta {meta} NOT NULL,
             stored_on BIGINT NOT NULL, last_access BIGINT NOT NULL DEFAULT 0, fill_revision BIGINT NOT NULL DEFAULT 0,
             invalidated_revision BIGINT, invalidated_at BIGINT, PRIMARY KEY (zone_id, generation, key_hash))"
        ),
        "UPDATE zones SET generation = 3".to_owned(),
        format!("INSERT INTO generations (zone_id, generation, objects, bytes) VALUES ('{z}', 1, 0, 0)"),
    ] {
        sqlx::query(sql(statement)).execute(&mut *tx).await.unwrap();
    }
    let (old, new) = (entry(&z, 2, "old", 10), entry(&z, 3, "new", 20));
    for e in [&old, &new] {
        sqlx::query(
            "INSERT INTO objects (zone_id, generation, key_hash, cache_key, blob, size, meta, stored_on, last_access,
                                  fill_revision, invalidated_revision, invalidated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 5, 6, 7, 8, 9)",
        )
        .bind(z.as_str())
        .bind(e.generation)
        .bind(&e.key_hash)
        .bind(&e.key)
        .bind(&e.blob)
        .bind(e.size as i64)
        .bind(b"meta".to_vec())
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query("INSERT INTO generations (zone_id, generation, objects, bytes) VALUES ($1, $2, 1, $3)")
            .bind(z.as_str())
            .bind(e.generation)
            .bind(e.size as i64)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    sqlx::query(
        "INSERT INTO clears (zone_id, target_generation, start_ts, modified_on, objects_total, bytes_total, kind)
         VALUES ($1, 3, 1, 1, 1, 10, 'clear')",
    )
    .bind(z.as_str())
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let s = match &f.url {
        Some(url) => SqlStore::open_postgres(url, 4, Duration::from_secs(5), true).await.unwrap(),
        None => {
            f.store.close().await;
            SqlStore::open_sqlite(&f._dir.path().join("control.db")).await.unwrap()
        }
    };
    let found = s.lookup(&z, &new.key_hash).await.unwrap().expect("the current entry is converted");
    assert_eq!(
        (found.key, found.blob, found.size, found.meta),
        (new.key.clone(), new.blob.clone(), 20, b"meta".to_vec())
    );
    assert_eq!((found.stored_on.as_micros(), found.fill_revision), (5, 7));
    assert_eq!(found.invalidation.map(|i| (i.revision, i.at.as_micros())), Some((8, 9)));
    assert_eq!(s.usage(&z).await.unwrap(), Usage { objects: 1, bytes: 20 });
    // The retired generations are there for their Clear, batch by batch (as on S3), then dropped.
    let lease = s.claim_clear("node-a", Duration::from_secs(30)).await.unwrap().unwrap();
    let batch = s.bodies_below(&z, 3, 10).await.unwrap();
    assert_eq!(batch.iter().map(|b| b.blob.as_str()).collect::<Vec<_>>(), [old.blob.as_str()]);
    s.forget_through(&lease, &batch[0], Duration::from_secs(30)).await.unwrap();
    assert_eq!(rows_below(&s, &z, 3).await, (0, 0));
    assert_eq!(s.complete_clear(&lease).await.unwrap(), 0, "nothing was left to forget");
    assert!(!has_table(&s, &z, 1).await && !has_table(&s, &z, 2).await);
    assert_eq!(s.latest_clear(&z).await.unwrap().unwrap().progress.objects_remaining, 0);
    let legacy: i64 = sqlx::query_scalar(match s.dialect {
        Dialect::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE name = 'objects'",
        Dialect::Postgres => "SELECT COUNT(*) FROM pg_tables WHERE tablename = 'objects'",
    })
    .fetch_one(&s.read)
    .await
    .unwrap();
    assert_eq!(legacy, 0, "the old table is dropped");
    // Opening again finds nothing to convert.
    if f.url.is_none() {
        s.close().await;
        let again = SqlStore::open_sqlite(&f._dir.path().join("control.db")).await.unwrap();
        assert!(again.lookup(&z, &new.key_hash).await.unwrap().is_some());
    }
}

async fn retention_evicts_idle_entries_of_each_zones_current_generation_only(f: Fixture) {
    let s = &f.store;
    let (a, b, cleared) = (zone(s, "a.example").await, zone(s, "b.example").await, zone(s, "c.example").await);
    for z in [&a, &b, &cleared] {
        set_reserve(s, z, true).await;
        let batch: Vec<_> = (0..3).map(|i| entry(z, 1, &format!("k{i}"), 10)).collect();
        s.record_batch(&batch).await.unwrap();
    }
    set_reserve(s, &cleared, false).await;
    start(s, &cleared).await;
    let later = Timestamp::from_micros(Timestamp::now().as_micros() + 1_000_000);
    // A limit across zones, then the rest; never the cleared zone's retired entries (its Clear's).
    let first = s.evict_idle(later, 4).await.unwrap();
    assert_eq!(first.len(), 4);
    let rest = s.evict_idle(later, 100).await.unwrap();
    assert_eq!(rest.len(), 2);
    let mut zones: Vec<_> = first.iter().chain(&rest).map(|e| e.zone_id.clone()).collect();
    zones.sort();
    zones.dedup();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(zones, expected);
    for z in [&a, &b] {
        assert_eq!(s.usage(z).await.unwrap(), Usage::default());
    }
    assert_eq!(rows_below(s, &cleared, 2).await, (3, 30), "the retired entries wait for their Clear");
    assert!(s.evict_idle(later, 100).await.unwrap().is_empty());
}
