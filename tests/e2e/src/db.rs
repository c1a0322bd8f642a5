//! A fresh PostgreSQL database per stack, dropped afterwards.

use anyhow::{Context, Result};
use sqlx::{Connection, PgConnection};

pub struct TestDb {
    pub name: String,
    /// Connection URL of the new database.
    pub url: String,
    admin_url: String,
}

impl TestDb {
    /// Creates `hubgate_e2e_<random>` through the admin connection.
    pub async fn create(admin_url: &str) -> Result<TestDb> {
        let name = format!("hubgate_e2e_{}", crate::random_lower(12));
        let mut conn = PgConnection::connect(admin_url)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {} (set DATABASE_URL)", redact(admin_url)))?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .with_context(|| format!("creating database {name}"))?;
        let _ = conn.close().await;
        Ok(TestDb { url: with_database(admin_url, &name), name, admin_url: admin_url.to_string() })
    }

    /// Drops the database, disconnecting whoever still uses it. Runs on its
    /// own thread and runtime so it works from `Drop` inside async tests.
    fn drop_database(&self) -> Result<()> {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let worker = std::thread::spawn(move || -> Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async move {
                let mut conn = PgConnection::connect(&admin_url).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(&mut conn).await?;
                let _ = conn.close().await;
                Ok(())
            })
        });
        worker.join().map_err(|_| anyhow::anyhow!("database drop thread panicked"))?
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::env::var("HUBGATE_E2E_KEEP_DB").is_ok_and(|v| v == "1") {
            eprintln!("hubgate e2e: keeping database {} (HUBGATE_E2E_KEEP_DB=1)", self.name);
            return;
        }
        if let Err(e) = self.drop_database() {
            eprintln!("hubgate e2e: could not drop database {}: {e:#}", self.name);
        }
    }
}

/// The same URL pointing at another database.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{db}?{q}"),
        None => format!("{host_part}/{db}"),
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else { return url.to_string() };
    let rest = &url[scheme_end..];
    match (rest.find('@'), rest.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!("{}{}:***{}", &url[..scheme_end], &rest[..colon], &rest[at..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_swapped() {
        assert_eq!(with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"), "postgres://postgres@127.0.0.1:5432/x");
        assert_eq!(with_database("postgres://u:p@h/db?sslmode=disable", "x"), "postgres://u:p@h/x?sslmode=disable");
        assert_eq!(with_database("postgres://h:5432", "x"), "postgres://h:5432/x");
    }

    #[test]
    fn password_is_hidden() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
