use std::time::Duration;

use hubgate_control_plane::background::claim;

use crate::common::spawn;

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn one_replica_claims_each_interval_of_a_job() {
    let app = spawn().await;
    assert!(claim(&app.pool, "job", HOUR).await.unwrap());
    // Another replica within the interval: not its turn.
    assert!(!claim(&app.pool, "job", HOUR).await.unwrap());
    // Other jobs are claimed on their own.
    assert!(claim(&app.pool, "other", HOUR).await.unwrap());
    // 55 minutes later: within the 10 % slack of the next interval.
    sqlx::query(
        "UPDATE job_runs SET last_run_at = now() - interval '55 minutes' WHERE job = 'job'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    assert!(claim(&app.pool, "job", HOUR).await.unwrap());
    assert!(!claim(&app.pool, "job", HOUR).await.unwrap());
}

#[tokio::test]
async fn replicas_racing_for_a_run_get_one_claim() {
    let app = spawn().await;
    sqlx::query(
        "INSERT INTO job_runs (job, last_run_at) VALUES ('job', now() - interval '2 hours')",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let racers = (0..8).map(|_| {
        let pool = app.pool.clone();
        tokio::spawn(async move { claim(&pool, "job", HOUR).await.unwrap() })
    });
    let mut won = 0;
    for racer in racers.collect::<Vec<_>>() {
        won += usize::from(racer.await.unwrap());
    }
    assert_eq!(won, 1);
}
