//! Settling a finished request: which usage counts, and what it costs.

use hubgate_wire::{CostBreakdown, Usage};
use rust_decimal::Decimal;

use crate::cost::{cost_parts, Price};
use crate::usage::Metered;

#[derive(Debug, Clone, PartialEq)]
pub struct Settlement {
    pub usage: Usage,
    pub cost_usd: Decimal,
    /// What `cost_usd` is made of, when it was computed from a price (the
    /// parts add up to it exactly); `None` when the request is not billed
    /// or its price is unknown.
    pub breakdown: Option<CostBreakdown>,
    pub flags: Vec<String>,
}

/// Bills a request that reached a provider. Non-2xx answers are not billed;
/// a 2xx without usage is estimated from sizes and flagged; a cut stream is
/// billed for what was seen and flagged.
pub fn settle(
    status: u16,
    billable: bool,
    metered: &Metered,
    request_bytes: u64,
    price: Option<&Price>,
    multiplier: Decimal,
) -> Settlement {
    let mut flags = Vec::new();
    let success = (200..300).contains(&status);
    let mut usage = metered.usage.clone().unwrap_or_default();
    if metered.incomplete {
        flags.push("stream_incomplete".to_string());
    }
    if metered.output_estimated {
        flags.push("output_estimated".to_string());
    }
    if !billable || !success {
        return Settlement { usage, cost_usd: Decimal::ZERO, breakdown: None, flags };
    }
    if metered.unsupported {
        flags.push("usage_unsupported".to_string());
        return Settlement { usage, cost_usd: Decimal::ZERO, breakdown: None, flags };
    }
    if metered.usage.is_none() {
        usage = Usage {
            input_tokens: request_bytes.div_ceil(4),
            // A stream's output text when it was measured, else all bytes.
            output_tokens: metered.output_chars.unwrap_or(metered.response_bytes).div_ceil(4),
            ..Usage::default()
        };
        flags.push("usage_estimated".to_string());
    }
    let breakdown = match price.map(|p| cost_parts(&usage, p, multiplier)) {
        Some(Some(parts)) => Some(parts),
        Some(None) => {
            flags.push("cost_overflow".to_string());
            None
        }
        None => {
            flags.push("price_missing".to_string());
            None
        }
    };
    let cost_usd = breakdown.and_then(|parts| parts.total()).map_or(Decimal::ZERO, |c| c.normalize());
    Settlement { usage, cost_usd, breakdown, flags }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price() -> Price {
        Price {
            input: Decimal::from(3),
            output: Decimal::from(15),
            cache_write_5m: Decimal::new(375, 2),
            cache_write_1h: Decimal::from(6),
            cache_read: Decimal::new(3, 1),
        }
    }

    fn metered(usage: Option<Usage>, incomplete: bool) -> Metered {
        Metered { usage, incomplete, response_bytes: 400, output_estimated: incomplete, ..Metered::default() }
    }

    #[test]
    fn success_is_billed_at_price_times_multiplier() {
        let u = Usage { input_tokens: 1_000_000, output_tokens: 0, ..Default::default() };
        let s = settle(200, true, &metered(Some(u.clone()), false), 10, Some(&price()), Decimal::new(15, 1));
        assert_eq!(s.cost_usd, Decimal::new(45, 1));
        assert_eq!(s.usage, u);
        assert!(s.flags.is_empty());
        let parts = s.breakdown.unwrap();
        assert_eq!(parts.input_usd, Decimal::new(45, 1));
        assert_eq!(parts.output_usd, Decimal::ZERO);
        assert_eq!(parts.total(), Some(s.cost_usd));
    }

    #[test]
    fn errors_and_passthrough_are_free() {
        let u = Usage { input_tokens: 10, ..Default::default() };
        let refused = settle(500, true, &metered(Some(u.clone()), false), 10, Some(&price()), Decimal::ONE);
        assert_eq!((refused.cost_usd, refused.breakdown), (Decimal::ZERO, None));
        assert_eq!(settle(200, false, &metered(Some(u), false), 10, Some(&price()), Decimal::ONE).cost_usd, Decimal::ZERO);
    }

    #[test]
    fn missing_usage_is_estimated_and_flagged() {
        let s = settle(200, true, &metered(None, false), 4000, Some(&price()), Decimal::ONE);
        assert_eq!((s.usage.input_tokens, s.usage.output_tokens), (1000, 100));
        assert_eq!(s.flags, vec!["usage_estimated"]);
        assert!(s.cost_usd > Decimal::ZERO);
    }

    #[test]
    fn cut_stream_billed_for_what_was_seen() {
        let u = Usage { input_tokens: 100, output_tokens: 1, ..Default::default() };
        let s = settle(200, true, &metered(Some(u), true), 10, Some(&price()), Decimal::ONE);
        assert_eq!(s.flags, vec!["stream_incomplete", "output_estimated"]);
        assert_eq!(s.cost_usd, Decimal::new(315, 6));
        let parts = s.breakdown.unwrap();
        assert_eq!((parts.input_usd, parts.output_usd), (Decimal::new(3, 4), Decimal::new(15, 6)));
    }

    #[test]
    fn unsupported_formats_are_flagged_not_guessed() {
        let m = Metered { response_bytes: 4000, unsupported: true, ..Metered::default() };
        let s = settle(200, true, &m, 4000, Some(&price()), Decimal::ONE);
        assert_eq!(s.flags, vec!["usage_unsupported"]);
        assert_eq!(s.cost_usd, Decimal::ZERO);
    }

    #[test]
    fn absurd_numbers_do_not_panic() {
        let u = Usage { input_tokens: u64::MAX, output_tokens: u64::MAX, ..Default::default() };
        let huge = Price { input: Decimal::MAX, ..price() };
        let s = settle(200, true, &metered(Some(u), false), 10, Some(&huge), Decimal::MAX);
        assert_eq!(s.flags, vec!["cost_overflow"]);
        assert_eq!((s.cost_usd, s.breakdown), (Decimal::ZERO, None));
    }

    #[test]
    fn unknown_price_is_flagged() {
        let u = Usage { input_tokens: 100, ..Default::default() };
        let s = settle(200, true, &metered(Some(u), false), 10, None, Decimal::ONE);
        assert_eq!(s.flags, vec!["price_missing"]);
        assert_eq!(s.cost_usd, Decimal::ZERO);
        assert_eq!(s.breakdown, None);
    }
}
