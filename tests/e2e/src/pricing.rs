//! The cost a request must be billed, computed independently of the filter
//! from a model price row of the admin API (SPEC §4).

use std::str::FromStr;

use anyhow::{anyhow, Result};
use hubgate_mock_provider::AnthropicUsage;
use rust_decimal::Decimal;
use serde_json::Value;

/// A decimal from a JSON string or number.
pub fn decimal(v: &Value) -> Result<Decimal> {
    match v {
        Value::String(s) => Decimal::from_str(s).map_err(|e| anyhow!("not a decimal: {s:?}: {e}")),
        Value::Number(n) => Decimal::from_str(&n.to_string())
            .or_else(|_| Decimal::from_scientific(&n.to_string()))
            .map_err(|e| anyhow!("not a decimal: {n}: {e}")),
        other => Err(anyhow!("not a decimal: {other}")),
    }
}

fn optional_decimal(row: &Value, field: &str) -> Result<Option<Decimal>> {
    match row.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => decimal(v).map(Some),
    }
}

/// USD per million tokens of one model.
#[derive(Debug, Clone, PartialEq)]
pub struct Price {
    pub model: String,
    pub input: Decimal,
    pub output: Decimal,
    pub cache_write_5m: Decimal,
    pub cache_write_1h: Decimal,
    pub cache_read: Decimal,
}

impl Price {
    /// From a `/api/v1/model-prices` row; missing cache prices fall back to
    /// 1.25× / 2× / 0.1× the input price.
    pub fn from_row(row: &Value) -> Result<Price> {
        let field = |name: &str| -> Result<Decimal> {
            decimal(row.get(name).ok_or_else(|| anyhow!("price row has no `{name}`: {row}"))?)
        };
        let input = field("input_per_mtok")?;
        Ok(Price {
            model: row.get("model").and_then(Value::as_str).unwrap_or_default().to_string(),
            input,
            output: field("output_per_mtok")?,
            cache_write_5m: optional_decimal(row, "cache_write_5m_per_mtok")?.unwrap_or(input * Decimal::new(125, 2)),
            cache_write_1h: optional_decimal(row, "cache_write_1h_per_mtok")?.unwrap_or(input * Decimal::new(2, 0)),
            cache_read: optional_decimal(row, "cache_read_per_mtok")?.unwrap_or(input * Decimal::new(1, 1)),
        })
    }

    /// Σ tokens × price / 1e6 × multiplier.
    pub fn cost(&self, usage: &AnthropicUsage, multiplier: Decimal) -> Decimal {
        let tokens = |n: u64| Decimal::from(n);
        let sum = tokens(usage.input_tokens) * self.input
            + tokens(usage.output_tokens) * self.output
            + tokens(usage.cache_creation_5m_input_tokens) * self.cache_write_5m
            + tokens(usage.cache_creation_1h_input_tokens) * self.cache_write_1h
            + tokens(usage.cache_read_input_tokens) * self.cache_read;
        (sum / Decimal::from(1_000_000u32) * multiplier).normalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cost_uses_every_price_and_the_multiplier() {
        let p = Price::from_row(&json!({
            "model": "m", "input_per_mtok": "3", "output_per_mtok": 15,
            "cache_write_5m_per_mtok": "3.75", "cache_write_1h_per_mtok": null, "cache_read_per_mtok": "0.30"
        }))
        .unwrap();
        assert_eq!(p.cache_write_1h, Decimal::new(6, 0));
        let usage = AnthropicUsage {
            input_tokens: 1000,
            output_tokens: 100,
            cache_creation_5m_input_tokens: 1000,
            cache_creation_1h_input_tokens: 1000,
            cache_read_input_tokens: 1000,
        };
        // (3000 + 1500 + 3750 + 6000 + 300) / 1e6 × 1.5
        assert_eq!(p.cost(&usage, Decimal::new(15, 1)), Decimal::from_str("0.021825").unwrap());
    }
}
