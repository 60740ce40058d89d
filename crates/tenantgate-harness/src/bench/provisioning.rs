//! Section `provisioning`: how long each way of getting a PostgreSQL database takes, from
//! asking to accepting connections.

use std::time::Instant;

use super::{Context, Measurement, Results, Section, Skipped, timed};
use crate::provision::{self, Janitor, PgOptions, PgProviderChoice, find_bindir};

pub async fn run(context: &Context<'_>, results: &mut Results) -> anyhow::Result<()> {
    let runs = context.bench.runs;
    context.say(&format!(
        "provisioning: {runs} testcontainers containers from {}",
        context.image
    ));
    let container = provider_start(context, PgProviderChoice::Container, runs).await?;
    results.measurements.push(Measurement {
        section: Section::Provisioning,
        name: "testcontainers container".to_string(),
        stats: container,
        comparison: None,
        note: None,
    });

    if find_bindir().is_some() {
        context.say(&format!(
            "provisioning: {runs} ephemeral clusters from local binaries"
        ));
        let local = provider_start(context, PgProviderChoice::Local, runs).await?;
        results.measurements.push(Measurement {
            section: Section::Provisioning,
            name: "local-binaries cluster".to_string(),
            stats: local,
            comparison: None,
            note: None,
        });
    } else {
        results.skipped.push(Skipped {
            section: Section::Provisioning,
            reason: "local-binaries cluster: no PostgreSQL server binaries (apt-get install postgresql, or set TENANTGATE_PG_BINDIR)".to_string(),
        });
    }

    let database_runs = runs * 2;
    context.say(&format!(
        "provisioning: {database_runs} CREATE DATABASE on the running server"
    ));
    let create = timed(database_runs, async |run| {
        let name = format!("bench_create_{run}");
        let took = context.server.create(&name, None).await?;
        context.server.drop(&name).await?;
        Ok(took)
    })
    .await?;
    results.measurements.push(Measurement {
        section: Section::Provisioning,
        name: "CREATE DATABASE on a running server".to_string(),
        stats: create,
        comparison: None,
        note: None,
    });
    Ok(())
}

/// Starts and removes `runs` databases from `choice`; times each start to ready.
async fn provider_start(
    context: &Context<'_>,
    choice: PgProviderChoice,
    runs: usize,
) -> anyhow::Result<super::Stats> {
    let options = PgOptions {
        choice,
        image: context.image.clone(),
        server_url: None,
    };
    timed(runs, async |_| {
        let janitor = Janitor::new();
        let started = Instant::now();
        let database = provision::postgres(&options, &janitor).await;
        let took = started.elapsed();
        let leftovers = janitor.finish(false).await;
        database?;
        anyhow::ensure!(
            leftovers.is_empty(),
            "cleanup failed: {}",
            leftovers.join("; ")
        );
        Ok(took)
    })
    .await
}
