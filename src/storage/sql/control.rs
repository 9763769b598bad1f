//! [`ControlStore`] in SQL: zones, the reserve setting, Clear operations, node syncs, tokens and users.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{Any, Transaction};

use super::{
    SqlStore, backend, retrying, rows, sql, unique_or_backend,
    zones::{announce, lock_zone, new_generation, next_revision, zone_in},
};
use crate::{
    domain::{
        ClearOperation, PurgeAction, PurgeRule, PurgeTarget, Timestamp, TokenId, Zone, ZoneId, ZoneName,
        rules::{ClearDecision, ReserveDecision, decide_set_reserve, decide_start_clear},
        secret::SecretHash,
    },
    storage::{
        ControlStore, NewZone, Page, PurgeOutcome, SetReserveOutcome, StartClearOutcome, StoreError, StoreResult,
        StoredToken, StoredUser, ZoneFilter,
    },
};

/// The latest Clear of a zone (not a `purge_everything` or a deletion, reclaimed the same way; a deleted zone's
/// Clears become `delete` when its id is used again) with what is left of the generations it clears.
const LATEST_CLEAR: &str = "
    SELECT c.id, c.zone_id, c.target_generation, c.start_ts, c.end_ts, c.modified_on,
           c.objects_total, c.bytes_total,
           CAST(COALESCE((SELECT SUM(g.objects) FROM generations g
                          WHERE g.zone_id = c.zone_id AND g.generation < c.target_generation), 0) AS BIGINT)
               AS remaining_objects,
           CAST(COALESCE((SELECT SUM(g.bytes) FROM generations g
                          WHERE g.zone_id = c.zone_id AND g.generation < c.target_generation), 0) AS BIGINT)
               AS remaining_bytes
    FROM clears c WHERE c.zone_id = $1 AND c.kind = 'clear' ORDER BY c.id DESC LIMIT 1";

/// The channel on which PostgreSQL announces zone changes (payload `zones`) and node syncs (`sync`).
pub(super) const CHANNEL: &str = "cache_reserve";

async fn latest_clear_in(tx: &mut Transaction<'static, Any>, id: &ZoneId) -> StoreResult<Option<ClearOperation>> {
    let row = sqlx::query(LATEST_CLEAR).bind(id.as_str()).fetch_optional(&mut **tx).await.map_err(backend)?;
    row.as_ref().map(rows::clear).transpose()
}

#[async_trait]
impl ControlStore for SqlStore {
    async fn account_id(&self) -> StoreResult<String> {
        sqlx::query_scalar("SELECT value FROM meta WHERE key = 'account_id'")
            .fetch_one(&self.read)
            .await
            .map_err(backend)
    }

    async fn installation_value(&self, key: &str, default: &str) -> StoreResult<String> {
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(default)
            .execute(&self.write)
            .await
            .map_err(backend)?;
        sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_one(&self.write)
            .await
            .map_err(backend)
    }

    async fn create_zone(&self, zone: NewZone) -> StoreResult<Zone> {
        self.create_zone_row(&zone).await
    }

    async fn delete_zone(&self, id: &ZoneId) -> StoreResult<Zone> {
        self.delete_zone_row(id).await
    }

    async fn zone(&self, id: &ZoneId) -> StoreResult<Option<Zone>> {
        let row = sqlx::query("SELECT * FROM zones WHERE id = $1 AND deleted_on IS NULL")
            .bind(id.as_str())
            .fetch_optional(&self.read)
            .await
            .map_err(backend)?;
        row.as_ref().map(rows::zone).transpose()
    }

    async fn zone_by_name(&self, name: &ZoneName) -> StoreResult<Option<Zone>> {
        let row = sqlx::query("SELECT * FROM zones WHERE name = $1 AND deleted_on IS NULL")
            .bind(name.as_str())
            .fetch_optional(&self.read)
            .await
            .map_err(backend)?;
        row.as_ref().map(rows::zone).transpose()
    }

    async fn list_zones(&self, filter: &ZoneFilter, page: Page) -> StoreResult<(Vec<Zone>, u64)> {
        // Scoped tokens name few zones; filter in memory after a name-ordered scan of the matching rows.
        let rows = sqlx::query(
            "SELECT * FROM zones WHERE deleted_on IS NULL AND (CAST($1 AS TEXT) IS NULL OR name = $1) ORDER BY name",
        )
        .bind(filter.name.as_ref().map(|n| n.as_str()))
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        let mut zones = rows.iter().map(rows::zone).collect::<StoreResult<Vec<_>>>()?;
        if let Some(only) = &filter.only {
            zones.retain(|z| only.contains(&z.id));
        }
        let total = zones.len() as u64;
        let skip = (page.page.saturating_sub(1) as usize).saturating_mul(page.per_page as usize);
        let zones = zones.into_iter().skip(skip).take(page.per_page as usize).collect();
        Ok((zones, total))
    }

    async fn zone_changes(&self, after: i64, limit: u32) -> StoreResult<Vec<Zone>> {
        let rows = sqlx::query("SELECT * FROM zones WHERE revision > $1 ORDER BY revision LIMIT $2")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.sync_read)
            .await
            .map_err(backend)?;
        rows.iter().map(rows::zone).collect()
    }

    async fn set_origin(&self, id: &ZoneId, origin: Option<String>) -> StoreResult<Zone> {
        let d = self.dialect;
        retrying!(async {
            let mut tx = self.begin_write().await?;
            lock_zone(&mut tx, d, id).await?;
            let revision = next_revision(&mut tx).await?;
            sqlx::query(sql(format!(
                "UPDATE zones SET origin = $2, modified_on = {}, revision = $3 WHERE id = $1",
                d.now()
            )))
            .bind(id.as_str())
            .bind(&origin)
            .bind(revision)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            announce(&mut tx, d, "zones").await?;
            let zone = zone_in(&mut tx, id).await?;
            tx.commit().await.map_err(backend)?;
            Ok(zone)
        })
    }

    async fn set_reserve(&self, id: &ZoneId, on: bool) -> StoreResult<SetReserveOutcome> {
        let d = self.dialect;
        retrying!(async {
            let mut tx = self.begin_write().await?;
            lock_zone(&mut tx, d, id).await?;
            let latest = latest_clear_in(&mut tx, id).await?;
            if decide_set_reserve(on, latest.as_ref()) == ReserveDecision::ClearInProgress {
                return Ok(SetReserveOutcome::ClearInProgress);
            }
            let revision = next_revision(&mut tx).await?;
            sqlx::query(sql(format!(
                "UPDATE zones SET reserve_on = $2, reserve_modified_on = {}, revision = $3 WHERE id = $1",
                d.now()
            )))
            .bind(id.as_str())
            .bind(i64::from(on))
            .bind(revision)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            announce(&mut tx, d, "zones").await?;
            let zone = zone_in(&mut tx, id).await?;
            tx.commit().await.map_err(backend)?;
            Ok(SetReserveOutcome::Changed(zone))
        })
    }

    async fn start_clear(&self, id: &ZoneId) -> StoreResult<StartClearOutcome> {
        let d = self.dialect;
        retrying!(async {
            let mut tx = self.begin_write().await?;
            // Writes racing this one hold the zone shared until they commit (or are refused): once the lock
            // is ours, every object of the old generations is counted below.
            let zone = lock_zone(&mut tx, d, id).await?;
            let latest = latest_clear_in(&mut tx, id).await?;
            match decide_start_clear(&zone, latest.as_ref()) {
                ClearDecision::AlreadyRunning => {
                    return Ok(StartClearOutcome::AlreadyRunning(latest.expect("a running clear")));
                }
                ClearDecision::ReserveOn => return Ok(StartClearOutcome::ReserveOn),
                ClearDecision::Start => {}
            }
            let revision = next_revision(&mut tx).await?;
            new_generation(&mut tx, d, id, revision, "clear").await?;
            announce(&mut tx, d, "zones").await?;
            let op = latest_clear_in(&mut tx, id).await?.ok_or_else(|| StoreError::NotFound("clear".into()))?;
            let zone = zone_in(&mut tx, id).await?;
            tx.commit().await.map_err(backend)?;
            Ok(StartClearOutcome::Started { op, zone })
        })
    }

    async fn purge(&self, id: &ZoneId, action: PurgeAction, targets: &[PurgeTarget]) -> StoreResult<PurgeOutcome> {
        let d = self.dialect;
        retrying!(async {
            let mut tx = self.begin_write().await?;
            // Writes racing this one hold the zone shared until they commit or are refused (`purge_revision`).
            lock_zone(&mut tx, d, id).await?;
            let revision = next_revision(&mut tx).await?;
            let mut rules = Vec::new();
            if action == PurgeAction::Purge && targets.contains(&PurgeTarget::Everything) {
                new_generation(&mut tx, d, id, revision, "purge").await?;
            } else {
                let created_on: i64 = sqlx::query_scalar(sql(format!("SELECT {}", d.now())))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(backend)?;
                for target in targets {
                    let headers = match target {
                        PurgeTarget::File { headers, .. } if !headers.is_empty() => {
                            Some(serde_json::to_string(headers).map_err(|e| StoreError::Backend(e.into()))?)
                        }
                        _ => None,
                    };
                    sqlx::query(
                        "INSERT INTO purge_rules (revision, zone_id, action, kind, value, headers, created_on)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(revision)
                    .bind(id.as_str())
                    .bind(action.as_str())
                    .bind(target.kind())
                    .bind(target.value())
                    .bind(headers)
                    .bind(created_on)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                    rules.push(PurgeRule {
                        revision,
                        zone_id: id.clone(),
                        action,
                        target: target.clone(),
                        created_on: Timestamp::from_micros(created_on),
                    });
                }
                sqlx::query("UPDATE zones SET revision = $2, purge_revision = $2 WHERE id = $1")
                    .bind(id.as_str())
                    .bind(revision)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
            }
            announce(&mut tx, d, "zones").await?;
            let zone = zone_in(&mut tx, id).await?;
            tx.commit().await.map_err(backend)?;
            Ok(PurgeOutcome { zone, rules })
        })
    }

    async fn purge_rules(&self, after: i64, through: i64) -> StoreResult<Vec<PurgeRule>> {
        let rows = sqlx::query(
            "SELECT revision, zone_id, action, kind, value, headers, created_on FROM purge_rules
             WHERE revision > $1 AND revision <= $2 ORDER BY revision, id",
        )
        .bind(after)
        .bind(through)
        .fetch_all(&self.sync_read)
        .await
        .map_err(backend)?;
        rows.iter().map(rows::purge_rule).collect()
    }

    async fn latest_clear(&self, id: &ZoneId) -> StoreResult<Option<ClearOperation>> {
        let row = sqlx::query(LATEST_CLEAR).bind(id.as_str()).fetch_optional(&self.read).await.map_err(backend)?;
        row.as_ref().map(rows::clear).transpose()
    }

    async fn record_sync(&self, node: &str, seen_revision: i64, swept_revision: i64) -> StoreResult<i64> {
        let d = self.dialect;
        retrying!(async {
            // Declared first, dropped last: the claim outlives the transaction.
            let (_claim, mut tx) = self.begin_sync_write().await?;
            // Locks the row a retirement locks first (see `PurgeIndex::retire_purges`).
            // Read after this sync's read of the rules: had a retirement deleted rules this node never
            // read, this sees it (and the node empties its memory tiers before using its view).
            let retired: i64 = sqlx::query_scalar("SELECT value FROM counters WHERE name = 'purge_retired_through'")
                .fetch_one(&mut *tx)
                .await
                .map_err(backend)?;
            sqlx::query(sql(format!(
                "INSERT INTO nodes (id, seen_revision, synced_on, started_on, swept_revision)
                 VALUES ($1, $2, {now}, {now}, $3)
                 ON CONFLICT (id) DO UPDATE SET seen_revision = excluded.seen_revision, synced_on = excluded.synced_on,
                                                swept_revision = excluded.swept_revision",
                now = d.now()
            )))
            .bind(node)
            .bind(seen_revision)
            .bind(swept_revision)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            sqlx::query(sql(format!("DELETE FROM nodes WHERE synced_on < {} - 86400000000", d.now())))
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            announce(&mut tx, d, "sync").await?;
            tx.commit().await.map_err(backend)?;
            Ok(retired)
        })
    }

    async fn forget_node(&self, node: &str) -> StoreResult<()> {
        let d = self.dialect;
        retrying!(async {
            let mut tx = self.begin_write().await?;
            sqlx::query("DELETE FROM nodes WHERE id = $1").bind(node).execute(&mut *tx).await.map_err(backend)?;
            announce(&mut tx, d, "sync").await?;
            tx.commit().await.map_err(backend)
        })
    }

    async fn lagging_nodes(&self, node: &str, revision: i64, window: Duration) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(sql(format!(
            "SELECT COUNT(*) FROM nodes WHERE id <> $1 AND seen_revision < $2 AND synced_on > {} - $3",
            self.dialect.statement_now()
        )))
        .bind(node)
        .bind(revision)
        .bind(i64::try_from(window.as_micros()).unwrap_or(i64::MAX))
        .fetch_one(&self.read)
        .await
        .map_err(backend)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn create_token(&self, t: StoredToken) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO tokens (id, name, secret_hash, permissions, zones, created_on, expires_on, revoked_on)
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)",
        )
        .bind(t.id.as_str())
        .bind(&t.name)
        .bind(&t.hash.0)
        .bind(rows::permissions_text(&t.permissions))
        .bind(rows::scope_text(&t.scope))
        .bind(t.created_on.as_micros())
        .bind(t.expires_on.map(Timestamp::as_micros))
        .execute(&self.write)
        .await
        .map_err(|e| unique_or_backend(e, "token"))?;
        Ok(())
    }

    async fn token_by_hash(&self, hash: &SecretHash) -> StoreResult<Option<StoredToken>> {
        let row = sqlx::query("SELECT * FROM tokens WHERE secret_hash = $1")
            .bind(&hash.0)
            .fetch_optional(&self.read)
            .await
            .map_err(backend)?;
        row.as_ref().map(rows::token).transpose()
    }

    async fn list_tokens(&self) -> StoreResult<Vec<StoredToken>> {
        let rows =
            sqlx::query("SELECT * FROM tokens ORDER BY created_on").fetch_all(&self.read).await.map_err(backend)?;
        rows.iter().map(rows::token).collect()
    }

    async fn revoke_token(&self, id: &TokenId, now: Timestamp) -> StoreResult<()> {
        let done = sqlx::query("UPDATE tokens SET revoked_on = COALESCE(revoked_on, $2) WHERE id = $1")
            .bind(id.as_str())
            .bind(now.as_micros())
            .execute(&self.write)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("token {id}")));
        }
        Ok(())
    }

    async fn create_user(&self, u: StoredUser) -> StoreResult<()> {
        sqlx::query("INSERT INTO users (id, email, key_hash, created_on) VALUES ($1, $2, $3, $4)")
            .bind(u.id.as_str())
            .bind(&u.email)
            .bind(&u.key_hash.0)
            .bind(u.created_on.as_micros())
            .execute(&self.write)
            .await
            .map_err(|e| unique_or_backend(e, format!("user {}", u.email)))?;
        Ok(())
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<StoredUser>> {
        let row = sqlx::query("SELECT * FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(&self.read)
            .await
            .map_err(backend)?;
        row.as_ref().map(rows::user).transpose()
    }
}
