//! Weighted provider selection, checked statistically with fixed seeds (so
//! every run sees the same numbers): within the best priority tier each
//! provider's share of many picks matches its weight to within what chance
//! allows for that many picks (a chi-square test at α = 0.001 plus a 4σ bound
//! per provider), and a worse tier is never picked while a better one has an
//! eligible provider.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::rc::Rc;

use hubgate_core::api::{Dialect, Endpoint};
use hubgate_core::chain::{Cx, Exchange, FakeHost, Guard, Step, VmState};
use hubgate_core::config::PluginConfig;
use hubgate_core::guards::provider::{select, Provider as ProviderGuard};
use hubgate_core::keys::CachedKey;
use hubgate_core::snapshot::CompiledSnapshot;
use hubgate_wire::{CircuitSettings, Limits, PolicySnapshot, Provider, ProviderTimeouts, ProviderType, ResolvedKey};
use rust_decimal::Decimal;

/// Picks per run, and runs (each with its own RNG seed).
const PICKS: usize = 10_000;
const RUNS: u64 = 20;

/// splitmix64: a small, well-mixed generator, fixed here so the test does
/// not depend on any RNG crate's output staying the same.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A version 4 UUID in its usual text form, like the `x-request-id`
    /// Envoy generates.
    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        let h = format!("{a:016x}{b:016x}");
        format!("{}-{}-4{}-{:x}{}-{}", &h[0..8], &h[8..12], &h[13..16], 8 | (b >> 62), &h[17..20], &h[20..32])
    }
}

fn provider(id: i64, priority: i32, weight: u32) -> Provider {
    Provider {
        id,
        name: format!("p{id}"),
        provider_type: ProviderType::Claude,
        base_url: format!("http://127.0.0.1:{}", 9000 + id),
        credential: format!("cred-{id}"),
        enabled: true,
        weight,
        priority,
        cost_multiplier: Decimal::ONE,
        group_tags: vec![],
        allowed_models: vec![],
        model_redirects: vec![],
        limits: Limits::default(),
        circuit: CircuitSettings::default(),
        timeouts: ProviderTimeouts::default(),
    }
}

fn snapshot(providers: Vec<Provider>) -> CompiledSnapshot {
    let (compiled, problems) = CompiledSnapshot::compile(PolicySnapshot { providers, ..Default::default() });
    assert!(problems.is_empty(), "{problems:?}");
    compiled
}

fn key() -> ResolvedKey {
    serde_json::from_value(serde_json::json!({
        "id": 1, "name": "k", "masked": "sk-…x", "enabled": true, "expires_at_ms": null,
        "can_login_web_ui": false, "limits": Limits::default(), "provider_group": null,
        "user": {"id": 1, "name": "u", "enabled": true, "expires_at_ms": null, "role": "user",
            "allowed_clients": [], "blocked_clients": [], "allowed_models": [], "rpm": null,
            "limits": Limits::default(), "daily_reset_mode": "fixed", "daily_reset_time": "00:00",
            "provider_group": null}
    }))
    .unwrap()
}

/// The chi-square critical value at α = 0.001 for `df` degrees of freedom.
fn chi_square_critical(df: usize) -> f64 {
    match df {
        1 => 10.828,
        2 => 13.816,
        3 => 16.266,
        4 => 18.467,
        _ => panic!("no critical value for {df} degrees of freedom"),
    }
}

/// Asserts that `counts[i]` out of their sum matches `weights[i]` / Σ weights.
#[track_caller]
fn assert_shares(what: &str, counts: &[u64], weights: &[u32]) {
    let n = counts.iter().sum::<u64>() as f64;
    let total = f64::from(weights.iter().sum::<u32>());
    let mut chi2 = 0.0;
    for (&count, &weight) in counts.iter().zip(weights) {
        let p = f64::from(weight) / total;
        let expected = n * p;
        let sigma = (n * p * (1.0 - p)).sqrt();
        let off = (count as f64 - expected).abs();
        assert!(
            off <= 4.0 * sigma,
            "{what}: weight {weight} got {count} of {n}, expected {expected:.0} ± {:.0}",
            4.0 * sigma
        );
        chi2 += (count as f64 - expected).powi(2) / expected;
    }
    let critical = chi_square_critical(counts.len() - 1);
    assert!(chi2 < critical, "{what}: counts {counts:?} for weights {weights:?}: χ² = {chi2:.2} ≥ {critical}");
}

/// How often each of `ids` is picked by `pick` over `PICKS` calls.
fn tally(ids: &[i64], mut pick: impl FnMut() -> i64) -> Vec<u64> {
    let mut counts = vec![0u64; ids.len()];
    for _ in 0..PICKS {
        let id = pick();
        let at = ids.iter().position(|&i| i == id).unwrap_or_else(|| panic!("picked provider {id}, not among {ids:?}"));
        counts[at] += 1;
    }
    counts
}

fn select_id(snap: &CompiledSnapshot, key: &ResolvedKey, circuit_open: impl Fn(i64) -> bool, seed: u64) -> i64 {
    select(
        snap,
        key,
        Endpoint::AnthropicMessages,
        Dialect::Anthropic,
        None,
        None,
        |p| circuit_open(p.provider.id),
        seed,
    )
    .unwrap()
    .provider
    .id
}

#[test]
fn random_seeds_split_picks_by_weight() {
    for weights in [vec![1, 3, 6], vec![1, 1], vec![1, 3], vec![2, 5, 1, 2]] {
        let ids: Vec<i64> = (1..=weights.len() as i64).collect();
        let snap = snapshot(ids.iter().zip(&weights).map(|(&id, &w)| provider(id, 0, w)).collect());
        let key = key();
        for run in 1..=RUNS {
            let mut rng = SplitMix(run);
            let counts = tally(&ids, || select_id(&snap, &key, |_| false, rng.next()));
            assert_shares(&format!("weights {weights:?}, run {run}"), &counts, &weights);
        }
    }
}

/// Consecutive picks are independent: each ordered pair of providers comes
/// up as often as the product of their shares says.
#[test]
fn consecutive_picks_are_independent() {
    let weights = [1u32, 3, 6];
    let snap = snapshot(vec![provider(1, 0, 1), provider(2, 0, 3), provider(3, 0, 6)]);
    let key = key();
    let pair_weights: Vec<u32> = weights.iter().flat_map(|a| weights.iter().map(move |b| a * b)).collect();
    for run in 1..=RUNS {
        let mut rng = SplitMix(run);
        let picks: Vec<usize> =
            (0..=PICKS).map(|_| (select_id(&snap, &key, |_| false, rng.next()) - 1) as usize).collect();
        let mut pairs = vec![0u64; 9];
        for w in picks.windows(2) {
            pairs[w[0] * 3 + w[1]] += 1;
        }
        // 9 cells: 8 degrees of freedom; 26.12 is χ²(8) at α = 0.001.
        let n = PICKS as f64;
        let chi2: f64 = pairs
            .iter()
            .zip(&pair_weights)
            .map(|(&c, &w)| {
                let e = n * f64::from(w) / 100.0;
                (c as f64 - e).powi(2) / e
            })
            .sum();
        assert!(chi2 < 26.12, "run {run}: pairs {pairs:?}, χ² = {chi2:.2}");
    }
}

/// The guard itself, as the filter runs it: the seed comes from each
/// request's id (Envoy's `x-request-id`, a random UUID) and the host.
#[test]
fn the_provider_guard_splits_requests_by_weight() {
    let weights = [1u32, 3, 6];
    let ids = [1i64, 2, 3];
    let snap = Rc::new(snapshot(vec![provider(1, 0, 1), provider(2, 0, 3), provider(3, 0, 6)]));
    let entry = Rc::new(CachedKey::new(0, 0, Some(key())));
    let host = FakeHost::default();
    let vm = VmState::new(PluginConfig::default(), "test");
    for run in 1..=RUNS {
        let mut rng = SplitMix(run);
        let counts = tally(&ids, || {
            let mut ex = Exchange {
                request_id: rng.uuid(),
                method: "POST".into(),
                path: "/v1/messages".into(),
                endpoint: Endpoint::AnthropicMessages,
                dialect: Dialect::Anthropic,
                snapshot: Some(snap.clone()),
                key_entry: Some(entry.clone()),
                authenticated: true,
                ..Exchange::default()
            };
            let mut cx = Cx { host: &host, vm: &vm, ex: &mut ex, background: Vec::new() };
            assert!(matches!(ProviderGuard.check(&mut cx), Ok(Step::Next)));
            ex.plan.as_ref().unwrap().provider_id
        });
        assert_shares(&format!("guard, run {run}"), &counts, &weights);
    }
}

#[test]
fn a_worse_tier_is_never_picked_while_a_better_one_is_eligible() {
    // Tier 0: weights 1:3:6. Tier 1: one provider with a far larger weight.
    let snap = snapshot(vec![provider(1, 0, 1), provider(2, 0, 3), provider(3, 0, 6), provider(4, 1, 1000)]);
    let key = key();
    for run in 1..=RUNS {
        let mut rng = SplitMix(run);
        let counts = tally(&[1, 2, 3, 4], || select_id(&snap, &key, |_| false, rng.next()));
        assert_eq!(counts[3], 0, "run {run}: {counts:?}");
        assert_shares(&format!("tier 0, run {run}"), &counts[..3], &[1, 3, 6]);

        // With two of tier 0's circuits open, its last provider takes all.
        let counts = tally(&[1, 2, 3, 4], || select_id(&snap, &key, |id| id == 2 || id == 3, rng.next()));
        assert_eq!(counts, vec![PICKS as u64, 0, 0, 0], "run {run}");

        // Only with all of tier 0 out does tier 1 serve.
        let counts = tally(&[1, 2, 3, 4], || select_id(&snap, &key, |id| id <= 3, rng.next()));
        assert_eq!(counts, vec![0, 0, 0, PICKS as u64], "run {run}");
    }
}
