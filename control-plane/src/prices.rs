//! The committed price seed (`prices/model_prices.json`), embedded in the
//! binary and upserted by every migrate. Only `source = 'seed'` rows follow
//! it; rows an admin touched keep the admin's values.

use anyhow::Context;
use serde::Deserialize;
use sqlx::PgPool;

use crate::admin::prices::PriceInput;
use crate::db::bump_policy;

pub const SEED_JSON: &str = include_str!("../prices/model_prices.json");

#[derive(Deserialize)]
struct SeedFile {
    prices: Vec<PriceInput>,
}

/// The seed rows, validated like admin input.
pub fn seed_prices() -> anyhow::Result<Vec<PriceInput>> {
    let file: SeedFile =
        serde_json::from_str(SEED_JSON).context("parsing prices/model_prices.json")?;
    for price in &file.prices {
        if let Err(err) = price.validate() {
            anyhow::bail!("invalid seed price for {}: {err:?}", price.model);
        }
    }
    Ok(file.prices)
}

/// Inserts missing seed models and refreshes `seed` rows whose price changed.
/// Returns how many rows changed; the policy version moves only if some did.
pub async fn seed(pool: &PgPool) -> anyhow::Result<u64> {
    let prices = seed_prices()?;
    let mut tx = pool.begin().await?;
    let mut changed = 0;
    for p in &prices {
        let result = sqlx::query!(
            "INSERT INTO model_prices (model, input_per_mtok, output_per_mtok, cache_write_5m_per_mtok, \
               cache_write_1h_per_mtok, cache_read_per_mtok, model_fold, source) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'seed') \
             ON CONFLICT (model_fold) DO UPDATE SET input_per_mtok = EXCLUDED.input_per_mtok, \
               output_per_mtok = EXCLUDED.output_per_mtok, \
               cache_write_5m_per_mtok = EXCLUDED.cache_write_5m_per_mtok, \
               cache_write_1h_per_mtok = EXCLUDED.cache_write_1h_per_mtok, \
               cache_read_per_mtok = EXCLUDED.cache_read_per_mtok, updated_at = now() \
             WHERE model_prices.source = 'seed' \
               AND (model_prices.input_per_mtok, model_prices.output_per_mtok, \
                    model_prices.cache_write_5m_per_mtok, model_prices.cache_write_1h_per_mtok, \
                    model_prices.cache_read_per_mtok) \
                   IS DISTINCT FROM (EXCLUDED.input_per_mtok, EXCLUDED.output_per_mtok, \
                    EXCLUDED.cache_write_5m_per_mtok, EXCLUDED.cache_write_1h_per_mtok, \
                    EXCLUDED.cache_read_per_mtok)",
            p.model,
            p.input_per_mtok,
            p.output_per_mtok,
            p.cache_write_5m_per_mtok,
            p.cache_write_1h_per_mtok,
            p.cache_read_per_mtok,
            crate::validate::fold(&p.model)
        )
        .execute(&mut *tx)
        .await
        .with_context(|| format!("upserting seed price {}", p.model))?;
        changed += result.rows_affected();
    }
    if changed > 0 {
        bump_policy(&mut tx, false).await?;
    }
    tx.commit().await?;
    if changed > 0 {
        tracing::info!(changed, "seed prices applied");
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn seed_is_valid_and_covers_the_families() {
        let prices = seed_prices().unwrap();
        let models: HashSet<&str> = prices.iter().map(|p| p.model.as_str()).collect();
        assert_eq!(models.len(), prices.len(), "duplicate model in seed");
        for expected in [
            "claude-opus-4-5",
            "claude-opus-4-1",
            "claude-sonnet-4-5",
            "claude-sonnet-4-0",
            "claude-haiku-4-5",
            "claude-3-7-sonnet-20250219",
            "claude-3-5-haiku-20241022",
            "gpt-5",
            "gpt-5-mini",
            "gpt-5-codex",
            "gpt-4.1",
            "gpt-4o",
            "o3",
            "o4-mini",
            "gemini-2.5-pro",
            "gemini-2.5-flash",
            "gemini-2.5-flash-lite",
            "gemini-3-pro-preview",
        ] {
            assert!(models.contains(expected), "seed lacks {expected}");
        }
        for p in &prices {
            assert!(
                p.cache_write_5m_per_mtok.is_some(),
                "{} lacks cache write 5m",
                p.model
            );
            assert!(
                p.cache_write_1h_per_mtok.is_some(),
                "{} lacks cache write 1h",
                p.model
            );
            assert!(
                p.cache_read_per_mtok.is_some(),
                "{} lacks cache read",
                p.model
            );
            assert!(
                p.output_per_mtok >= p.input_per_mtok,
                "{} output below input",
                p.model
            );
        }
    }
}
