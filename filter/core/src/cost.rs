//! Prices and cost: Σ tokens × price per million tokens × provider
//! multiplier, in exact decimal arithmetic.

use std::collections::HashMap;

use hubgate_wire::{CostBreakdown, ModelPrice, Usage};
use rust_decimal::Decimal;

/// USD per million tokens, with cache-price fallbacks already applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub input: Decimal,
    pub output: Decimal,
    pub cache_write_5m: Decimal,
    pub cache_write_1h: Decimal,
    pub cache_read: Decimal,
}

impl Price {
    pub fn from_model_price(p: &ModelPrice) -> Price {
        Price {
            input: p.input_per_mtok,
            output: p.output_per_mtok,
            cache_write_5m: p.cache_write_5m_per_mtok.unwrap_or_else(|| times(p.input_per_mtok, Decimal::new(125, 2))),
            cache_write_1h: p.cache_write_1h_per_mtok.unwrap_or_else(|| times(p.input_per_mtok, Decimal::TWO)),
            cache_read: p.cache_read_per_mtok.unwrap_or_else(|| times(p.input_per_mtok, Decimal::new(1, 1))),
        }
    }
}

/// `a × b`, saturating instead of panicking on overflow.
fn times(a: Decimal, b: Decimal) -> Decimal {
    a.checked_mul(b).unwrap_or(Decimal::MAX)
}

/// Model prices compiled once per snapshot.
#[derive(Debug, Default)]
pub struct PriceTable {
    exact: HashMap<String, Price>,
    /// Longest first, for dated model ids such as `claude-sonnet-4-5-20250929`.
    by_prefix: Vec<(String, Price)>,
}

impl PriceTable {
    pub fn compile(prices: &[ModelPrice]) -> PriceTable {
        let mut exact = HashMap::with_capacity(prices.len());
        for p in prices {
            exact.insert(p.model.to_ascii_lowercase(), Price::from_model_price(p));
        }
        let mut by_prefix: Vec<(String, Price)> = exact.iter().map(|(k, v)| (k.clone(), *v)).collect();
        by_prefix.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        PriceTable { exact, by_prefix }
    }

    /// Exact (case-insensitive) match first, else a known model followed
    /// only by a date (`-20250929`, `-2024-08-06`). Any other suffix (`-pro`,
    /// `-mini`) is a different model with its own price, never a fallback.
    pub fn lookup(&self, model: &str) -> Option<&Price> {
        let model = model.to_ascii_lowercase();
        if let Some(p) = self.exact.get(&model) {
            return Some(p);
        }
        self.by_prefix
            .iter()
            .find(|(name, _)| model.strip_prefix(name.as_str()).is_some_and(is_date_suffix))
            .map(|(_, p)| p)
    }
}

fn is_date_suffix(rest: &str) -> bool {
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    match rest.strip_prefix('-') {
        Some(date) if digits(date, 8) => true,
        Some(date) => {
            let parts: Vec<&str> = date.split('-').collect();
            matches!(parts.as_slice(), [y, m, d] if digits(y, 4) && digits(m, 2) && digits(d, 2))
        }
        None => false,
    }
}

/// Cost in USD of `usage` at `price`, times the provider's multiplier;
/// `None` if the numbers overflow (decimal arithmetic would otherwise panic).
/// The sum of [`cost_parts`], so a request's breakdown always adds up to
/// its cost.
pub fn cost(usage: &Usage, price: &Price, multiplier: Decimal) -> Option<Decimal> {
    cost_parts(usage, price, multiplier)?.total().map(|c| c.normalize())
}

/// The cost of each token kind of `usage` at `price`, times the provider's
/// multiplier (tokens × USD per million tokens / 1,000,000 × multiplier);
/// `None` if the numbers overflow.
pub fn cost_parts(usage: &Usage, price: &Price, multiplier: Decimal) -> Option<CostBreakdown> {
    let part = |tokens: u64, price: Decimal| -> Option<Decimal> {
        let usd = Decimal::from(tokens)
            .checked_mul(price)?
            .checked_div(Decimal::from(1_000_000u32))?
            .checked_mul(multiplier)?;
        Some(usd.normalize())
    };
    let parts = CostBreakdown {
        input_usd: part(usage.input_tokens, price.input)?,
        output_usd: part(usage.output_tokens, price.output)?,
        cache_creation_5m_usd: part(usage.cache_creation_5m_tokens, price.cache_write_5m)?,
        cache_creation_1h_usd: part(usage.cache_creation_1h_tokens, price.cache_write_1h)?,
        cache_read_usd: part(usage.cache_read_tokens, price.cache_read)?,
    };
    // The total must be representable too.
    parts.total()?;
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn sonnet() -> ModelPrice {
        ModelPrice {
            model: "claude-sonnet-4-5".into(),
            input_per_mtok: d("3"),
            output_per_mtok: d("15"),
            cache_write_5m_per_mtok: Some(d("3.75")),
            cache_write_1h_per_mtok: Some(d("6")),
            cache_read_per_mtok: Some(d("0.30")),
        }
    }

    fn every_kind() -> Usage {
        Usage { input_tokens: 1200, output_tokens: 345, cache_creation_5m_tokens: 100, cache_creation_1h_tokens: 200, cache_read_tokens: 4000 }
    }

    #[test]
    fn exact_cost_with_multiplier() {
        let usage = every_kind();
        // 1200*3 + 345*15 + 100*3.75 + 200*6 + 4000*0.3 = 3600+5175+375+1200+1200 = 11550 per MTok
        let price = Price::from_model_price(&sonnet());
        assert_eq!(cost(&usage, &price, Decimal::ONE), Some(d("0.01155")));
        assert_eq!(cost(&usage, &price, d("1.5")), Some(d("0.017325")));
        assert_eq!(cost(&Usage::default(), &price, d("1.5")), Some(Decimal::ZERO));
    }

    #[test]
    fn parts_add_up_to_the_cost() {
        let usage = every_kind();
        let price = Price::from_model_price(&sonnet());
        let parts = cost_parts(&usage, &price, d("1.5")).unwrap();
        assert_eq!(
            parts,
            CostBreakdown {
                input_usd: d("0.0054"),
                output_usd: d("0.0077625"),
                cache_creation_5m_usd: d("0.0005625"),
                cache_creation_1h_usd: d("0.0018"),
                cache_read_usd: d("0.0018"),
            }
        );
        assert_eq!(parts.total(), cost(&usage, &price, d("1.5")));
        // Odd prices and multipliers: still exact.
        let odd = Price { input: d("0.333333"), output: d("1.7"), cache_write_5m: d("0.0001"), cache_write_1h: d("7"), cache_read: d("0.03") };
        for multiplier in [d("0"), d("0.7"), d("1.333"), d("3")] {
            for n in [0u64, 1, 7, 999_999, 123_456_789] {
                let u = Usage { input_tokens: n, output_tokens: n / 3, cache_creation_5m_tokens: n % 11, cache_creation_1h_tokens: 5, cache_read_tokens: n * 2 };
                let parts = cost_parts(&u, &odd, multiplier).unwrap();
                assert_eq!(parts.total(), cost(&u, &odd, multiplier), "{n} x {multiplier}");
            }
        }
        let huge = Usage { input_tokens: u64::MAX, ..Usage::default() };
        assert_eq!(cost_parts(&huge, &Price { input: Decimal::MAX, ..price }, Decimal::ONE), None);
    }

    #[test]
    fn missing_cache_prices_fall_back() {
        let mut p = sonnet();
        p.cache_write_5m_per_mtok = None;
        p.cache_write_1h_per_mtok = None;
        p.cache_read_per_mtok = None;
        let price = Price::from_model_price(&p);
        assert_eq!(price.cache_write_5m, d("3.75"));
        assert_eq!(price.cache_write_1h, d("6"));
        assert_eq!(price.cache_read, d("0.3"));
    }

    #[test]
    fn lookup_exact_then_longest_dated_prefix() {
        let mut sonnet4 = sonnet();
        sonnet4.model = "claude-sonnet-4".into();
        sonnet4.input_per_mtok = d("9");
        let table = PriceTable::compile(&[sonnet(), sonnet4]);
        assert_eq!(table.lookup("Claude-Sonnet-4-5").unwrap().input, d("3"));
        assert_eq!(table.lookup("claude-sonnet-4-5-20250929").unwrap().input, d("3"));
        assert_eq!(table.lookup("claude-sonnet-4-20250514").unwrap().input, d("9"));
        assert!(table.lookup("claude-sonnet-45").is_none());
        assert!(table.lookup("gpt-5").is_none());
    }

    #[test]
    fn only_a_date_suffix_falls_back() {
        let mut gpt = sonnet();
        gpt.model = "gpt-4o".into();
        let table = PriceTable::compile(&[gpt]);
        assert!(table.lookup("gpt-4o-2024-08-06").is_some());
        assert!(table.lookup("gpt-4o-mini").is_none());
        assert!(table.lookup("gpt-4o-pro").is_none());
        assert!(table.lookup("gpt-4o-2024-08").is_none());
    }
}
