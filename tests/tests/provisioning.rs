//! Every PostgreSQL provider gives a working database and takes it away again; bad input
//! gets an error that says what to do and never prints a password.

use std::time::Duration;

use sqlx::{Connection, PgConnection};
use tenantgate_harness::provision::{self, Janitor, PgOptions, PgProviderChoice, find_bindir};

async fn connects(url: &str) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(url)).await,
        Ok(Ok(_))
    )
}

#[tokio::test]
async fn a_local_cluster_runs_as_a_non_root_user_and_is_gone_afterwards() {
    assert!(
        find_bindir().is_some(),
        "PostgreSQL server binaries are needed (apt-get install postgresql)"
    );
    let janitor = Janitor::new();
    let options = PgOptions {
        choice: PgProviderChoice::Local,
        ..PgOptions::from_env()
    };
    let database = provision::postgres(&options, &janitor).await.unwrap();
    assert!(database.provider.to_string().starts_with("local binaries"));
    let mut conn = PgConnection::connect(&database.url).await.unwrap();
    let data_directory: String = sqlx::query_scalar("SHOW data_directory")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let fsync: String = sqlx::query_scalar("SHOW fsync")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(fsync, "off");
    conn.close().await.unwrap();
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&data_directory).unwrap());
    assert_ne!(
        owner, 0,
        "initdb refuses root: the cluster must belong to another user"
    );

    assert!(janitor.finish(false).await.is_empty());
    assert!(
        !connects(&database.url).await,
        "the cluster still accepts connections"
    );
    assert!(
        !std::path::Path::new(&data_directory).exists(),
        "{data_directory} was left behind"
    );
}

#[tokio::test]
async fn a_throwaway_database_on_an_existing_server_is_dropped_afterwards() {
    // The "existing server" is itself a fresh one from the default providers.
    let server_janitor = Janitor::new();
    let server = provision::postgres(&PgOptions::from_env(), &server_janitor)
        .await
        .unwrap();

    let janitor = Janitor::new();
    let options = PgOptions::on_server(&server.url);
    let database = provision::postgres(&options, &janitor).await.unwrap();
    assert!(database.provider.to_string().starts_with("server ("));
    assert!(
        !database.provider.to_string().contains("tg"),
        "the report must not show the password"
    );
    let name = database.url.rsplit('/').next().unwrap().to_string();
    assert!(name.starts_with("tenantgate_"), "{name}");
    assert!(connects(&database.url).await);

    assert!(janitor.finish(false).await.is_empty());
    let mut admin = PgConnection::connect(&server.url).await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(left, 0, "{name} was not dropped");
    admin.close().await.unwrap();
    server_janitor.finish(false).await;
}

/// The sweep for leftovers of dead runs drops this machine's throwaway databases whose
/// run died, and never another machine's (a colleague's `--keep` on a shared server),
/// whatever its pid says here.
#[tokio::test]
async fn the_leftover_sweep_leaves_other_machines_databases_alone() {
    let server_janitor = Janitor::new();
    let server = provision::postgres(&PgOptions::from_env(), &server_janitor)
        .await
        .unwrap();
    let dead_pid = 4_000_000; // above Linux's pid_max
    let ours = format!("tenantgate_{}_{dead_pid}_1", provision::host_tag());
    let colleagues = format!("tenantgate_0badc0de_{dead_pid}_2");
    let mut admin = PgConnection::connect(&server.url).await.unwrap();
    for name in [&ours, &colleagues] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let janitor = Janitor::new();
    let options = PgOptions::on_server(&server.url);
    provision::postgres(&options, &janitor).await.unwrap();
    assert!(janitor.finish(false).await.is_empty());
    let left: Vec<String> =
        sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname IN ($1, $2)")
            .bind(&ours)
            .bind(&colleagues)
            .fetch_all(&mut admin)
            .await
            .unwrap();
    assert_eq!(
        left,
        vec![colleagues.clone()],
        "ours is swept, theirs is kept"
    );
    admin.close().await.unwrap();
    server_janitor.finish(false).await;
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error_without_the_password() {
    let janitor = Janitor::new();
    let options = PgOptions::on_server("postgres://app:hunter2secret@127.0.0.1:1/shop");
    let error = format!(
        "{:#}",
        provision::postgres(&options, &janitor).await.unwrap_err()
    );
    assert!(
        error.contains("cannot connect to the PostgreSQL server given by --pg-url"),
        "{error}"
    );
    assert!(error.contains("127.0.0.1:1"), "{error}");
    assert!(error.contains("fix:"), "{error}");
    assert!(
        !error.contains("hunter2secret"),
        "the password leaked: {error}"
    );
}

#[tokio::test]
async fn a_missing_image_says_how_to_build_one() {
    let janitor = Janitor::new();
    let options = PgOptions {
        choice: PgProviderChoice::Container,
        image: "tenantgate/no-such-image:0".to_string(),
        ..PgOptions::from_env()
    };
    let error = format!(
        "{:#}",
        provision::postgres(&options, &janitor).await.unwrap_err()
    );
    // Without a Docker engine the error says so; with one, it names the image and the fix.
    let no_engine = error.contains("no Docker engine answers") && error.contains("fix:");
    let no_image =
        error.contains("tenantgate/no-such-image:0") && error.contains("cargo xtask pg-image");
    assert!(no_engine || no_image, "{error}");
    // An image of a named major: how to build it, or why it cannot be built here.
    for (image, fix) in [
        (
            "tenantgate/no-such-image:17",
            "`cargo xtask pg-image --version 17`",
        ),
        (
            "tenantgate/no-such-image:16",
            "no Debian suite packages PostgreSQL 16",
        ),
    ] {
        let options = PgOptions {
            image: image.to_string(),
            ..options.clone()
        };
        let error = format!(
            "{:#}",
            provision::postgres(&options, &janitor).await.unwrap_err()
        );
        let no_engine = error.contains("no Docker engine answers");
        assert!(
            no_engine || (error.contains(image) && error.contains(fix)),
            "{error}"
        );
    }
    assert!(janitor.finish(false).await.is_empty());
}

/// A container of an image `cargo xtask pg-image` built starts from the cluster made when
/// the image was built (a copy, not an `initdb`), with the password of this run; any
/// other image (the official one) runs `initdb`. Either way only that password gets in.
#[tokio::test]
async fn a_built_image_s_container_starts_from_its_seed_cluster_with_its_own_password() {
    use tenantgate_harness::pg_image::{LABEL, LABEL_VALUE};
    let janitor = Janitor::new();
    let options = PgOptions {
        choice: PgProviderChoice::Container,
        ..PgOptions::from_env()
    };
    let database = match provision::postgres(&options, &janitor).await {
        Ok(database) => database,
        Err(error) => panic!("a container of {} did not start: {error:#}", options.image),
    };
    // The image run: the one `pg-image` built for the default's major, if there is one.
    let provision::Provider::Container { image } = database.provider.clone() else {
        panic!("not a container: {}", database.provider);
    };
    assert!(connects(&database.url).await, "the run's password");
    let wrong = database
        .url
        .parse::<sqlx::postgres::PgConnectOptions>()
        .unwrap()
        .password("not-the-password");
    let refused =
        tokio::time::timeout(Duration::from_secs(5), PgConnection::connect_with(&wrong)).await;
    assert!(matches!(refused, Ok(Err(_))), "another password got in");

    let labelled = tenantgate_harness::pg_image::seeded(&image).expect("the image it ran");
    let sh = xshell::Shell::new().unwrap();
    let owner = format!("label=tenantgate.owner-pid={}", std::process::id());
    let ids = xshell::cmd!(sh, "docker ps -q --filter {owner}")
        .quiet()
        .read()
        .unwrap();
    let id = ids.lines().next().expect("this test's container is listed");
    let logs = xshell::cmd!(sh, "docker logs {id}")
        .quiet()
        .ignore_stdout()
        .output()
        .unwrap();
    let logs = String::from_utf8_lossy(&logs.stderr);
    let seeded = logs.contains("cluster copied from the image's seed");
    eprintln!(
        "{image}: labelled {LABEL}={LABEL_VALUE}: {labelled}, started from its seed cluster: {seeded}"
    );
    assert_eq!(
        seeded, labelled,
        "an image labelled {LABEL}={LABEL_VALUE} starts from its seed cluster, and only one: {logs}"
    );
    assert!(janitor.finish(false).await.is_empty());
}
