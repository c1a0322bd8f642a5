use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::common::spawn;

fn find<'a>(list: &'a Value, model: &str) -> Option<&'a Value> {
    list.as_array()
        .unwrap()
        .iter()
        .find(|p| p["model"] == model)
}

#[tokio::test]
async fn seed_prices_and_admin_overrides() {
    let app = spawn().await;
    let seed = hubgate_control_plane::prices::seed_prices().unwrap();
    let (status, list) = app.get("/api/v1/model-prices").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), seed.len());
    let sonnet = find(&list, "claude-sonnet-4-5").unwrap();
    assert_eq!(sonnet["source"], "seed");
    assert_eq!(sonnet["input_per_mtok"], "3");
    assert_eq!(sonnet["output_per_mtok"], "15");
    assert_eq!(sonnet["cache_write_5m_per_mtok"], "3.75");
    assert_eq!(sonnet["cache_read_per_mtok"], "0.30");
    for model in ["gpt-5", "gemini-2.5-pro", "claude-haiku-4-5", "o4-mini"] {
        assert!(find(&list, model).is_some(), "{model}");
    }
    // The model Claude Code sends by default is priced, cache tiers included.
    let opus = find(&list, "claude-opus-4-8").unwrap();
    assert_eq!(opus["source"], "seed");
    assert_eq!(opus["input_per_mtok"], "5");
    assert_eq!(opus["output_per_mtok"], "25");
    assert_eq!(opus["cache_write_5m_per_mtok"], "6.25");
    assert_eq!(opus["cache_write_1h_per_mtok"], "10");
    assert_eq!(opus["cache_read_per_mtok"], "0.50");

    // An admin edit wins over the seed, also after re-migrating.
    let id = sonnet["id"].as_i64().unwrap();
    let (status, edited) = app
        .patch(
            &format!("/api/v1/model-prices/{id}"),
            json!({ "input_per_mtok": "2.5" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["source"], "admin");
    assert_eq!(edited["input_per_mtok"], "2.5");
    assert_eq!(edited["output_per_mtok"], "15");
    // An admin deletion also survives.
    let opus = find(&list, "claude-opus-4-1").unwrap();
    let (status, _) = app
        .delete(&format!("/api/v1/model-prices/{}", opus["id"]))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // A seed row that drifted from the committed table is restored.
    sqlx::query("UPDATE model_prices SET output_per_mtok = 999 WHERE model = 'gpt-5'")
        .execute(&app.pool)
        .await
        .unwrap();

    let (v0, _) = app.policy().await;
    hubgate_control_plane::db::migrate(&app.pool).await.unwrap();
    let (v1, _) = app.policy().await;
    assert_eq!(v1, v0 + 1, "a seed change is a policy change");
    hubgate_control_plane::db::migrate(&app.pool).await.unwrap();
    assert_eq!(app.policy().await.0, v1, "an unchanged seed is not");

    let (_, list) = app.get("/api/v1/model-prices").await;
    let sonnet = find(&list, "claude-sonnet-4-5").unwrap();
    assert_eq!(sonnet["input_per_mtok"], "2.5");
    assert_eq!(sonnet["source"], "admin");
    assert!(find(&list, "claude-opus-4-1").is_none());
    assert_eq!(find(&list, "gpt-5").unwrap()["output_per_mtok"], "10");

    // Create, conflict, revive after delete; the snapshot carries prices.
    let body = json!({ "model": "my-model", "input_per_mtok": 1, "output_per_mtok": "2", "cache_read_per_mtok": 0.1 });
    let (status, created) = app.post("/api/v1/model-prices", body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["source"], "admin");
    assert_eq!(created["cache_read_per_mtok"], "0.1");
    let (status, conflict) = app.post("/api/v1/model-prices", body.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(conflict["error"]["field"], "model");
    let (status, revived) = app
        .post(
            "/api/v1/model-prices",
            json!({ "model": "claude-opus-4-1", "input_per_mtok": 14, "output_per_mtok": 70 }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{revived}");

    let (_, snap) = app.snapshot(None).await;
    let snap: hubgate_wire::PolicySnapshot = serde_json::from_value(snap).unwrap();
    let mine = snap.prices.iter().find(|p| p.model == "my-model").unwrap();
    assert_eq!(mine.cache_read_per_mtok, Some(Decimal::new(1, 1)));
    assert_eq!(mine.cache_write_5m_per_mtok, None);
    let sonnet = snap
        .prices
        .iter()
        .find(|p| p.model == "claude-sonnet-4-5")
        .unwrap();
    assert_eq!(sonnet.input_per_mtok, Decimal::new(25, 1));
}
