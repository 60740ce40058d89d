//! Every migration has a working down migration, and sqlx's own runner (the one sqlx-cli
//! uses) yields exactly the schema the harness snapshots.

use app::Db;
use tenantgate::Backend;
use tenantgate::db::{Conn, Scope};
use tenantgate::schema::Schema;

async fn up_down_up(backend: Backend) -> anyhow::Result<()> {
    tenantgate_tests::with_fresh_database(backend, async |database| {
        let db = Db::connect(&database.url).await?;
        let migrator = app::TENANTGATE.embedded(backend).unwrap().migrator;
        match &db {
            Db::Postgres(pool) => {
                migrator.run(pool).await?;
                migrator.undo(pool, 0).await?;
                migrator.run(pool).await?;
            }
            Db::Sqlite(pool) => {
                migrator.run(pool).await?;
                migrator.undo(pool, 0).await?;
                migrator.run(pool).await?;
            }
        }
        db.close().await;

        let mut conn = Conn::connect(backend, &database.url).await?;
        let text = Schema::read(&mut conn, &migrator.table_name, &Scope::Database)
            .await?
            .render();
        conn.close().await;
        let snapshot_path = tenantgate_harness::workspace::root()
            .join(format!("migrations/snapshots/{backend}.snap"));
        let snapshot = std::fs::read_to_string(&snapshot_path)?;
        // An insta snapshot is a header between two `---` lines, then the text.
        let body = snapshot.splitn(3, "---\n").nth(2).unwrap_or_default();
        assert_eq!(
            body.trim_end(),
            text.trim_end(),
            "{backend}: sqlx's runner after up, down, up differs from {}",
            snapshot_path.display()
        );
        anyhow::Ok(())
    })
    .await
}

#[tokio::test]
async fn sqlite_migrations_go_down_and_up_again_to_the_snapshotted_schema() -> anyhow::Result<()> {
    up_down_up(Backend::Sqlite).await
}

#[tokio::test]
async fn postgres_migrations_go_down_and_up_again_to_the_snapshotted_schema() -> anyhow::Result<()>
{
    up_down_up(Backend::Postgres).await
}
