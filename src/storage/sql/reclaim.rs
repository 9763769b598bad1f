//! The SQL side of reclaiming a Clear ([`ObjectIndex`](crate::storage::ObjectIndex)'s lease methods): the
//! lease and its fencing token, the retired generations' entries batch by batch (S3), and completion, which
//! drops the retired generations' tables.

use std::time::Duration;

use sqlx::{Any, Row, Transaction};

use super::{
    Dialect, SqlStore, backend,
    partitions::{self, is_missing_table, objects_table},
    retrying, rows, sql,
    writes::{CountChanges, apply_counts, subtract_deleted},
};
use crate::{
    domain::ZoneId,
    storage::{BodyRef, ClearLease, StoreError, StoreResult},
};

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Checks, with the Clear's row locked until commit, that `lease` is still the live one (same token and
/// owner, not expired on the database's clock).
async fn fence(tx: &mut Transaction<'static, Any>, d: Dialect, lease: &ClearLease) -> StoreResult<()> {
    let live: Option<i64> = sqlx::query_scalar(sql(format!(
        "SELECT id FROM clears WHERE id = $1 AND lease_token = $2 AND lease_owner = $3 AND lease_until >= {}{}",
        d.now(),
        d.for_update()
    )))
    .bind(lease.clear.clear_id)
    .bind(lease.token)
    .bind(&lease.node)
    .fetch_optional(&mut **tx)
    .await
    .map_err(backend)?;
    live.map(|_| ()).ok_or(StoreError::LeaseLost)
}

impl SqlStore {
    /// Drops every Clear's lease. Only for a store no other node uses (the embedded one, whose data
    /// directory `serve` holds locked): a restarted server then resumes a Clear at once instead of waiting
    /// for the lease of the process it replaces to run out.
    pub async fn release_all_leases(&self) -> StoreResult<()> {
        sqlx::query("UPDATE clears SET lease_owner = NULL, lease_until = NULL WHERE end_ts IS NULL")
            .execute(&self.write)
            .await
            .map_err(backend)?;
        Ok(())
    }

    /// [`ObjectIndex::claim_clear`](crate::storage::ObjectIndex::claim_clear).
    pub(super) async fn claim_clear_lease(&self, node: &str, lease: Duration) -> StoreResult<Option<ClearLease>> {
        let d = self.dialect;
        let row = sqlx::query(sql(format!(
            "UPDATE clears SET lease_owner = $1, lease_until = {now} + $2, lease_token = lease_token + 1
             WHERE id = (SELECT id FROM clears
                         WHERE end_ts IS NULL AND next_attempt <= {now}
                           AND (lease_until IS NULL OR lease_until < {now} OR lease_owner = $1)
                         ORDER BY next_attempt, id LIMIT 1{lock})
             RETURNING id, zone_id, target_generation, lease_token, attempts",
            now = d.now(),
            lock = d.skip_locked(),
        )))
        .bind(node)
        .bind(micros(lease))
        .fetch_optional(&self.write)
        .await
        .map_err(backend)?;
        row.map(|r| {
            Ok(ClearLease {
                clear: rows::pending_clear(&r)?,
                node: node.to_owned(),
                token: r.get("lease_token"),
                attempts: u32::try_from(r.get::<i64, _>("attempts")).unwrap_or(u32::MAX),
            })
        })
        .transpose()
    }

    /// [`ObjectIndex::bodies_below`](crate::storage::ObjectIndex::bodies_below).
    pub(super) async fn bodies_of_generations_below(
        &self,
        zone: &ZoneId,
        below: i64,
        limit: u32,
    ) -> StoreResult<Vec<BodyRef>> {
        let mut found = Vec::new();
        for generation in partitions::generations_below(&self.read, zone, below).await? {
            let Some(left) = (limit as usize).checked_sub(found.len()).filter(|&n| n > 0) else { break };
            let rows = sqlx::query(sql(format!(
                "SELECT key_hash, blob FROM {} ORDER BY key_hash LIMIT $1",
                objects_table(zone, generation)
            )))
            .bind(i64::try_from(left).unwrap_or(i64::MAX))
            .fetch_all(&self.read)
            .await;
            let rows = match rows {
                // Completed meanwhile by the node that held the Clear before us.
                Err(e) if is_missing_table(&e) => continue,
                other => other.map_err(backend)?,
            };
            found.extend(rows.iter().map(|r| BodyRef { generation, key_hash: r.get("key_hash"), blob: r.get("blob") }));
        }
        Ok(found)
    }

    /// [`ObjectIndex::forget_through`](crate::storage::ObjectIndex::forget_through).
    pub(super) async fn forget_entries_through(
        &self,
        lease: &ClearLease,
        last: &BodyRef,
        extend: Duration,
    ) -> StoreResult<()> {
        let d = self.dialect;
        let zone = &lease.clear.zone_id;
        debug_assert!(last.generation < lease.clear.target_generation);
        retrying!(async {
            let mut tx = self.begin_write().await?;
            fence(&mut tx, d, lease).await?;
            // Every entry of the generations before the last one's (the batch held them all), then the last
            // one's prefix. The counts subtracted are those of the rows this transaction deleted, whoever
            // else is deleting. (Tables stay until the Clear completes, under the same lease.)
            let older: Vec<i64> = sqlx::query_scalar(
                "SELECT generation FROM generations WHERE zone_id = $1 AND generation < $2 ORDER BY generation",
            )
            .bind(zone.as_str())
            .bind(last.generation)
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
            let mut counts = CountChanges::new();
            for generation in older {
                let sizes: Vec<i64> =
                    sqlx::query_scalar(sql(format!("DELETE FROM {} RETURNING size", objects_table(zone, generation))))
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(backend)?;
                for size in sizes {
                    subtract_deleted(&mut counts, zone.as_str(), generation, size);
                }
            }
            let sizes: Vec<i64> = sqlx::query_scalar(sql(format!(
                "DELETE FROM {} WHERE key_hash <= $1 RETURNING size",
                objects_table(zone, last.generation)
            )))
            .bind(&last.key_hash)
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
            for size in sizes {
                subtract_deleted(&mut counts, zone.as_str(), last.generation, size);
            }
            apply_counts(&mut tx, &counts).await?;
            sqlx::query(sql(format!(
                "UPDATE clears SET lease_until = {} + $2, attempts = 0, last_error = NULL WHERE id = $1",
                d.now()
            )))
            .bind(lease.clear.clear_id)
            .bind(micros(extend))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            tx.commit().await.map_err(backend)
        })
    }

    /// [`ObjectIndex::complete_clear`](crate::storage::ObjectIndex::complete_clear).
    pub(super) async fn complete_clear_dropping(&self, lease: &ClearLease) -> StoreResult<u64> {
        let d = self.dialect;
        retrying!(async {
            let mut tx = self.begin_write().await?;
            match fence(&mut tx, d, lease).await {
                Err(StoreError::LeaseLost) => {
                    // Completing twice is harmless: a Clear already completed (by us, before a lost reply)
                    // has no lease to hold.
                    let done: Option<i64> =
                        sqlx::query_scalar("SELECT id FROM clears WHERE id = $1 AND end_ts IS NOT NULL")
                            .bind(lease.clear.clear_id)
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(backend)?;
                    return if done.is_some() { Ok(0) } else { Err(StoreError::LeaseLost) };
                }
                other => other?,
            }
            // Whatever entries of the cleared generations are left go with their tables.
            let forgot = partitions::drop_below(&mut tx, &lease.clear.zone_id, lease.clear.target_generation).await?;
            sqlx::query(sql(format!(
                "UPDATE clears SET end_ts = {max}({now}, start_ts), modified_on = {max}({now}, start_ts),
                                   lease_owner = NULL, lease_until = NULL
                 WHERE id = $1 AND end_ts IS NULL",
                max = d.greatest(),
                now = d.now()
            )))
            .bind(lease.clear.clear_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            tx.commit().await.map_err(backend)?;
            Ok(forgot)
        })
    }

    /// [`ObjectIndex::release_clear`](crate::storage::ObjectIndex::release_clear).
    pub(super) async fn release_clear_lease(
        &self,
        lease: &ClearLease,
        retry_after: Duration,
        error: &str,
    ) -> StoreResult<()> {
        sqlx::query(sql(format!(
            "UPDATE clears SET lease_owner = NULL, lease_until = NULL, attempts = attempts + 1,
                               next_attempt = {} + $3, last_error = $4
             WHERE id = $1 AND lease_token = $2 AND end_ts IS NULL",
            self.dialect.now()
        )))
        .bind(lease.clear.clear_id)
        .bind(lease.token)
        .bind(micros(retry_after))
        .bind(error.chars().take(1000).collect::<String>())
        .execute(&self.write)
        .await
        .map_err(backend)?;
        Ok(())
    }
}
