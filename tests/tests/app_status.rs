//! `app status`: what a database applied, compared with what the binary embeds.

use app::Db;
use tenantgate::Backend;
use tenantgate::status::State;

async fn status(url: &str) -> anyhow::Result<Vec<tenantgate::status::MigrationStatus>> {
    tenantgate::status::status(&app::TENANTGATE, url).await
}
use sqlx::Executor;

#[tokio::test]
async fn status_reports_pending_applied_and_a_database_that_ran_another_build() -> anyhow::Result<()>
{
    tenantgate_tests::with_fresh_database(Backend::Sqlite, async |database| {
        let db = Db::connect(&database.url).await?;
        let before = status(&database.url).await?;
        assert_eq!(before.len(), 7);
        assert!(before.iter().all(|m| m.state == State::Pending), "{before:?}");

        db.migrate().await?;
        assert!(status(&database.url).await?.iter().all(|m| m.state == State::Applied));

        // The database records another checksum for 0003, and a version this build lacks.
        let Db::Sqlite(pool) = &db else { unreachable!() };
        pool.execute("UPDATE _sqlx_migrations SET checksum = x'00' WHERE version = 3").await?;
        pool.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (99, 'future', TRUE, x'00', 0)",
        )
        .await?;
        db.close().await;
        let after = status(&database.url).await?;
        let state_of = |version| after.iter().find(|m| m.version == version).map(|m| m.state.clone());
        assert_eq!(state_of(3), Some(State::ChecksumMismatch));
        assert_eq!(state_of(4), Some(State::Applied));
        assert_eq!(state_of(99), Some(State::Unknown));
        anyhow::Ok(())
    })
    .await
}
