//! Schema-per-tenant deployments: the whole sequence for every schema matching a pattern,
//! `jobs` at a time, each schema with its own lock, backup and rollback, so one failing
//! schema never leaves another half-migrated. Afterwards every schema's introspected schema
//! is fingerprinted, and schemas that differ from the rest are named with the difference.
//! A re-run skips what is already at the target, so it resumes where a stopped run ended.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use super::report::version_text;
use super::{Options, Outcome, Report, Source, Target};
use crate::config::Config;
use crate::db::{Conn, quote};
use crate::schema::Schema;

/// How to fan out.
#[derive(Clone, Debug)]
pub struct Fanout {
    /// A `LIKE` pattern over schema names, e.g. `tenant_%`.
    pub pattern: String,
    pub jobs: usize,
    /// Stop starting schemas after the first failure (running ones finish, and roll back
    /// if they fail).
    pub fail_fast: bool,
    /// At most this many schemas in one dump (the server's lock table may ask for fewer):
    /// the workers start on a dump's schemas as soon as it is taken.
    pub schemas_per_dump: Option<usize>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SchemaOutcome {
    pub schema: String,
    /// `not-started` when a fail-fast run stopped before it.
    pub outcome: String,
    pub ok: bool,
    pub seconds: f64,
    pub from_version: Option<i64>,
    pub to_version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
}

/// A schema whose introspected schema differs from the majority's.
#[derive(Clone, Debug, Serialize)]
pub struct SchemaDrift {
    pub schema: String,
    pub fingerprint: String,
    pub difference: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct FanoutReport {
    pub tool: &'static str,
    pub app: String,
    pub app_version: String,
    pub database: String,
    pub pattern: String,
    pub jobs: usize,
    pub started_at: String,
    pub seconds: f64,
    pub schemas: Vec<SchemaOutcome>,
    /// The fingerprint most schemas share, and how many share it.
    pub majority_fingerprint: Option<String>,
    pub majority_count: usize,
    pub drift: Vec<SchemaDrift>,
    /// The dumps of the schemas the run migrated (as few as the server's lock table allows).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<super::report::BackupInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl FanoutReport {
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.drift.is_empty() && self.schemas.iter().all(|s| s.ok)
    }

    pub fn render(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for schema in &self.schemas {
            *counts.entry(schema.outcome.as_str()).or_default() += 1;
        }
        let mut times: Vec<f64> = self
            .schemas
            .iter()
            .filter(|s| s.outcome != "not-started")
            .map(|s| s.seconds)
            .collect();
        times.sort_by(f64::total_cmp);
        let median = times.get(times.len() / 2).copied().unwrap_or(0.0);
        let max = times.last().copied().unwrap_or(0.0);
        let mut out = String::new();
        out.push_str(&format!("{:<12} {:>7}\n", "outcome", "schemas"));
        for (outcome, count) in &counts {
            out.push_str(&format!("{outcome:<12} {count:>7}\n"));
        }
        out.push_str(&format!(
            "per schema: median {median:.2} s, max {max:.2} s; {} jobs; total {:.1} s\n",
            self.jobs, self.seconds
        ));
        for schema in self.schemas.iter().filter(|s| !s.ok) {
            out.push_str(&format!(
                "FAIL {} ({}): {}\n",
                schema.schema,
                schema.outcome,
                schema.error.as_deref().unwrap_or("see its report")
            ));
        }
        for backup in &self.backups {
            out.push_str(&format!(
                "backup: {} ({} bytes, {:.1} s; {})\n",
                backup.path,
                backup.bytes,
                backup.seconds,
                backup.verified_by.join("; ")
            ));
        }
        if let Some(fingerprint) = &self.majority_fingerprint {
            out.push_str(&format!(
                "fingerprint {}: {} of {} schemas\n",
                &fingerprint[..12],
                self.majority_count,
                self.schemas.len()
            ));
        }
        for drift in &self.drift {
            out.push_str(&format!(
                "DRIFT {} (fingerprint {}) differs from the rest:\n",
                drift.schema,
                &drift.fingerprint[..12]
            ));
            for line in drift.difference.lines() {
                out.push_str(&format!("    {line}\n"));
            }
        }
        out.push_str(&self.verdict());
        out.push('\n');
        out
    }

    pub fn verdict(&self) -> String {
        let failed = self.schemas.iter().filter(|s| !s.ok).count();
        if let Some(error) = &self.error {
            return format!("migrate: FAIL — {error}");
        }
        if self.ok() {
            format!(
                "migrate: PASS — {} schemas matching `{}` of {} are at the target and identical ({:.1} s)",
                self.schemas.len(),
                self.pattern,
                self.database,
                self.seconds
            )
        } else {
            format!(
                "migrate: FAIL — {failed} of {} schemas failed, {} differ from the rest; the others are unharmed",
                self.schemas.len(),
                self.drift.len()
            )
        }
    }

    pub fn write_json(&self, path: &std::path::Path) -> std::io::Result<()> {
        std::fs::write(
            path,
            serde_json::to_string_pretty(self).expect("serializes") + "\n",
        )
    }
}

/// Where progress lines go, shared by the workers.
pub type Progress = Arc<Mutex<dyn FnMut(&str) + Send>>;

/// Runs `migrate` over every matching schema.
pub async fn migrate_schemas(
    source: &Source<'_>,
    config: &Config,
    base: &Target,
    options: &Options,
    fanout: &Fanout,
    progress: Progress,
) -> FanoutReport {
    let started = Instant::now();
    let mut report = FanoutReport {
        tool: "app migrate --tenant-schemas",
        app: source.app_name.clone(),
        app_version: source.app_version.clone(),
        database: base.label(),
        pattern: fanout.pattern.clone(),
        jobs: fanout.jobs.max(1),
        started_at: jiff::Timestamp::now().to_string(),
        seconds: 0.0,
        schemas: Vec::new(),
        majority_fingerprint: None,
        majority_count: 0,
        drift: Vec::new(),
        backups: Vec::new(),
        error: None,
    };
    let schemas = match list_schemas(base, &fanout.pattern).await {
        Ok(schemas) if schemas.is_empty() => {
            report.error = Some(format!(
                "no schema of {} matches `{}` (a LIKE pattern, e.g. tenant_%)",
                base.label(),
                fanout.pattern
            ));
            return report;
        }
        Ok(schemas) => schemas,
        Err(error) => {
            report.error = Some(format!("{error:#}"));
            return report;
        }
    };
    // Schemas already at the target need no lock, backup or verify of their own: one
    // pass over every migrations table finds them, and only the rest are run.
    let current = match up_to_date_schemas(source, base, options, &schemas).await {
        Ok(current) => current,
        Err(error) => {
            report.error = Some(format!("read the tenant schemas' migrations: {error:#}"));
            return report;
        }
    };
    let mut results_so_far: Vec<(SchemaOutcome, Option<String>)> = Vec::new();
    let last = source.ups().map(|m| m.version).max();
    for schema in schemas.iter().filter(|s| current.contains(*s)) {
        results_so_far.push((
            SchemaOutcome {
                schema: schema.clone(),
                outcome: outcome_word(Outcome::UpToDate).to_string(),
                ok: true,
                seconds: 0.0,
                from_version: last,
                to_version: last,
                error: None,
                report: None,
            },
            None,
        ));
    }
    if !current.is_empty() {
        let mut progress = progress.lock().expect("progress");
        progress(&format!(
            "{} of {} schemas are already at {}: nothing to do for them",
            current.len(),
            schemas.len(),
            version_text(last)
        ));
    }
    let all_schemas = schemas;
    let schemas: Vec<String> = all_schemas
        .iter()
        .filter(|s| !current.contains(*s))
        .cloned()
        .collect();
    let total = schemas.len();
    // One backup for many schemas: pg_dump reads the catalog of every schema whatever it
    // dumps, so a dump per schema costs the catalog a thousand times over. A dump locks
    // every table it holds in one transaction, so schemas go into as few dumps as the
    // server's lock table allows (`max_locks_per_transaction`).
    let backing_up = options.backup && !options.dry_run && !schemas.is_empty();
    let batches: Vec<Vec<String>> = if backing_up {
        match super::backup::dump_batches(base, &schemas, fanout.schemas_per_dump).await {
            Ok(batches) => batches,
            Err(error) => {
                report.error = Some(format!(
                    "backup failed, nothing was migrated: {error:#}\nfix: see the error above; or pass --no-backup to migrate without one (a failing schema is then reverted with its down migrations)"
                ));
                report.seconds = started.elapsed().as_secs_f64();
                return report;
            }
        }
    } else {
        schemas.chunks(READ_BATCH).map(<[String]>::to_vec).collect()
    };
    // The schemas go to the workers a batch at a time, as soon as their dump is taken and
    // their text before the run read (a few hundred per pass over the catalogs): the
    // workers migrate the first batch's schemas while the next one is dumped, so the
    // dumps (one server process each) no longer leave the other cores idle.
    let (ready, waiting) = tokio::sync::mpsc::unbounded_channel::<Ready>();
    let waiting = tokio::sync::Mutex::new(waiting);
    // Schemas a worker took (the ones before a failed batch, when one fails).
    let taken = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let results: Mutex<Vec<(SchemaOutcome, Option<String>)>> = Mutex::new(results_so_far);
    let mut backups = Vec::new();
    // Why the schemas no batch handed over were not started, when it was the batches' fault.
    let mut unprepared: Option<String> = None;
    // While a dump is taken, half the workers wait: the dump is one server process that
    // the next batch waits for, and with every worker busy it got a fraction of a core
    // (a dump of 106 of 1,000 schemas: 3.4 s alone, 6-7 s beside four workers), while the
    // workers sat idle between batches. Each worker holds a permit for a schema's run.
    let running = tokio::sync::Semaphore::new(report.jobs);
    let producer = async {
        let ready = ready;
        for (index, batch) in batches.iter().enumerate() {
            if stop.load(Ordering::SeqCst) || options.interrupted.load(Ordering::SeqCst) {
                break;
            }
            let yielded = if backing_up && report.jobs >= 2 {
                running.acquire_many((report.jobs / 2) as u32).await.ok()
            } else {
                None
            };
            let prepared = prepare_batch(
                source,
                base,
                options,
                batch,
                (index, batches.len(), total),
                &progress,
                report.jobs,
            )
            .await;
            drop(yielded);
            match prepared {
                Ok((dump, mut texts)) => {
                    if let Some(dump) = &dump {
                        backups.push(dump.info.clone());
                    }
                    for schema in batch {
                        let before = texts.remove(schema);
                        // A worker gone (fail-fast) leaves the schema not started.
                        let _ = ready.send((schema.clone(), dump.clone(), before));
                    }
                }
                Err(error) => {
                    unprepared = Some(format!("{error:#}"));
                    break;
                }
            }
        }
    };
    let schema_options = Options {
        report: None,
        report_unchanged: false,
        ..options.clone()
    };
    let worker = async || {
        // One connection for every schema this worker runs (`migrate_reusing`).
        let mut conn: Option<Conn> = None;
        loop {
            if stop.load(Ordering::SeqCst) || options.interrupted.load(Ordering::SeqCst) {
                break;
            }
            let Some((schema, shared_backup, before_schema)) = waiting.lock().await.recv().await
            else {
                break;
            };
            taken.fetch_add(1, Ordering::SeqCst);
            let permit = running.acquire().await;
            let target = base.in_schema(&schema);
            let mut say = |line: &str| {
                let mut progress = progress.lock().expect("progress");
                progress(&format!("{schema}: {line}"));
            };
            let options = Options {
                shared_backup,
                before_schema,
                ..schema_options.clone()
            };
            let run: Report =
                super::migrate_reusing(&mut conn, source, config, &target, &options, &mut say)
                    .await;
            drop(permit);
            let ok = run.outcome.ok();
            if !ok && fanout.fail_fast {
                stop.store(true, Ordering::SeqCst);
            }
            let finished = done.fetch_add(1, Ordering::SeqCst) + 1;
            {
                let mut progress = progress.lock().expect("progress");
                progress(&format!(
                    "[{finished}/{total}] {schema:<24} {:<12} {} → {}  {:.2} s{}",
                    outcome_word(run.outcome),
                    version_text(run.from_version),
                    version_text(run.to_version),
                    run.seconds,
                    run.error
                        .as_deref()
                        .map(|e| format!("  {}", e.lines().next().unwrap_or_default()))
                        .unwrap_or_default()
                ));
            }
            results.lock().expect("results").push((
                SchemaOutcome {
                    schema: schema.clone(),
                    outcome: outcome_word(run.outcome).to_string(),
                    ok,
                    seconds: run.seconds,
                    from_version: run.from_version,
                    to_version: run.to_version,
                    error: run.error.clone(),
                    report: run.report_path.clone(),
                },
                run.schema_text.clone(),
            ));
        }
        if let Some(conn) = conn {
            conn.close().await;
        }
    };
    let workers: Vec<_> = (0..report.jobs).map(|_| worker()).collect();
    futures_util::future::join(producer, futures_util::future::join_all(workers)).await;
    report.backups = backups;

    let mut results = results.into_inner().expect("results");
    let started_names: BTreeSet<String> = results.iter().map(|(s, _)| s.schema.clone()).collect();
    let why_not_started = match &unprepared {
        Some(error) => {
            let migrated = taken.load(Ordering::SeqCst);
            report.error = Some(format!(
                "{error}\n{} of the {total} schemas to migrate were not started: they have no backup (the {migrated} before them were migrated, each from a dump above)\nfix: see the error above and run again (a re-run resumes with them); or pass --no-backup to migrate without one",
                total - migrated
            ));
            "not started: its backup, or the read of its schema before the run, failed (a re-run resumes here)"
        }
        None if options.interrupted.load(Ordering::SeqCst) => {
            "not started: the run was interrupted (a re-run resumes here)"
        }
        None => {
            "not started: an earlier schema failed and --fail-fast was given (a re-run resumes here)"
        }
    };
    for schema in all_schemas.iter().filter(|s| !started_names.contains(*s)) {
        results.push((
            SchemaOutcome {
                schema: schema.clone(),
                outcome: "not-started".to_string(),
                ok: false,
                seconds: 0.0,
                from_version: None,
                to_version: None,
                error: Some(why_not_started.to_string()),
                report: None,
            },
            None,
        ));
    }
    // Fingerprints: the schemas that differ from the majority, with the difference. A
    // schema that was not started is as it was, not a schema to compare with the rest.
    let (mut results, not_started): (Vec<_>, Vec<_>) = results
        .into_iter()
        .partition(|(outcome, _)| outcome.outcome != "not-started");
    results.sort_by(|a, b| a.0.schema.cmp(&b.0.schema));
    match fingerprints(source, base, &mut results, report.jobs).await {
        Ok((texts, read)) => {
            // The schemas skipped as up to date were not verified one by one: their
            // structure is, once per distinct text.
            if let Err(error) = verify_skipped(
                source,
                config,
                base,
                options,
                &current,
                &texts,
                &read,
                &mut results,
            )
            .await
            {
                report.error = Some(format!(
                    "verify the schemas already at the target: {error:#}"
                ));
            }
            let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (schema, (fingerprint, _)) in &texts {
                groups
                    .entry(fingerprint.clone())
                    .or_default()
                    .push(schema.clone());
            }
            if let Some((majority, members)) =
                groups.iter().max_by_key(|(_, members)| members.len())
            {
                report.majority_fingerprint = Some(majority.clone());
                report.majority_count = members.len();
                let reference = &texts[&members[0]].1;
                for (schema, (fingerprint, text)) in &texts {
                    if fingerprint != majority {
                        report.drift.push(SchemaDrift {
                            schema: schema.clone(),
                            fingerprint: fingerprint.clone(),
                            difference: super::verify::differences(
                                reference,
                                text,
                                ("has", "lacks"),
                            )
                            .join("\n"),
                        });
                    }
                }
            }
        }
        Err(error) => report.error = Some(format!("fingerprint the schemas: {error:#}")),
    }
    results.extend(not_started);
    results.sort_by(|a, b| a.0.schema.cmp(&b.0.schema));
    report.schemas = results.into_iter().map(|(s, _)| s).collect();
    report.seconds = started.elapsed().as_secs_f64();
    report
}

/// A schema ready for its run: its name, the dump that holds it, its text before the run.
type Ready = (
    String,
    Option<Arc<super::backup::SharedBackup>>,
    Option<String>,
);

/// Makes `batch` ready for its runs: dumps it (unless the run takes no backup) and reads
/// its schemas' texts before the run (unless it is a dry run). `position` is the batch's
/// index, the number of batches and the number of schemas to migrate, for the progress
/// lines.
async fn prepare_batch(
    source: &Source<'_>,
    base: &Target,
    options: &Options,
    batch: &[String],
    position: (usize, usize, usize),
    progress: &Progress,
    jobs: usize,
) -> anyhow::Result<(
    Option<Arc<super::backup::SharedBackup>>,
    BTreeMap<String, String>,
)> {
    let (index, batches, total) = position;
    let say = |line: &str| {
        let mut progress = progress.lock().expect("progress");
        progress(line);
    };
    let dump = if options.backup && !options.dry_run {
        if super::fault::at(super::fault::BEFORE_DUMP) == super::fault::Injected::Fail {
            anyhow::bail!(
                "backup failed (dump {} of {batches}): a failure injected at {}",
                index + 1,
                super::fault::BEFORE_DUMP
            );
        }
        say(&format!(
            "backing up {} of the {total} schemas to migrate (dump {} of {batches})",
            batch.len(),
            index + 1
        ));
        let files = super::backup::Files::new(&options.backup_dir, &base.label());
        let dump = super::backup::backup_schemas(base, batch, &files, options.pg_bin.as_deref())
            .await
            .with_context(|| format!("backup failed (dump {} of {batches})", index + 1))?;
        say(&format!(
            "backup: {} ({} bytes) in {:.1} s",
            dump.info.path, dump.info.bytes, dump.info.seconds
        ));
        Some(Arc::new(dump))
    } else {
        None
    };
    let texts = if options.dry_run {
        BTreeMap::new()
    } else {
        schema_texts(source, base, batch, jobs)
            .await
            .context("read the tenant schemas before migrating them")?
    };
    Ok((dump, texts))
}

fn outcome_word(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Migrated => "migrated",
        Outcome::UpToDate => "up-to-date",
        Outcome::DryRun => "dry-run",
        Outcome::Refused => "refused",
        Outcome::RolledBack => "rolled-back",
        Outcome::Failed => "failed",
        Outcome::Running => "unfinished",
    }
}

async fn list_schemas(base: &Target, pattern: &str) -> anyhow::Result<Vec<String>> {
    let mut conn = base.connect(false).await?;
    let Conn::Postgres(pg) = &mut conn else {
        anyhow::bail!("--tenant-schemas needs PostgreSQL: SQLite has no schemas");
    };
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1 AND nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' ORDER BY 1",
    )
    .bind(pattern)
    .fetch_all(&mut *pg)
    .await
    .context("list the tenant schemas")?;
    conn.close().await;
    Ok(schemas)
}

/// Each of `schemas` (a missing one as empty), read in batches of [`READ_BATCH`] on one
/// connection: each batch takes one pass over the catalogs.
/// Reads `schemas`, [`READ_BATCH`] per pass over the catalogs, up to `jobs` passes at once
/// (each on a connection of its own): the server's work, not the client's, is most of a
/// read, and one connection keeps one of its processes busy.
async fn read_schemas(
    source: &Source<'_>,
    base: &Target,
    schemas: &[String],
    jobs: usize,
) -> anyhow::Result<BTreeMap<String, Schema>> {
    use futures_util::StreamExt as _;
    let table = source.migrator.table_name.to_string();
    let read_batch = async |batch: &[String]| {
        let mut conn = base.connect(false).await?;
        let Conn::Postgres(pg) = &mut conn else {
            anyhow::bail!("--tenant-schemas needs PostgreSQL");
        };
        let read = Schema::read_postgres_schemas(pg, batch, &table).await;
        conn.close().await;
        let mut read = read?;
        Ok(batch
            .iter()
            .map(|name| (name.clone(), read.remove(name).unwrap_or_default()))
            .collect::<Vec<_>>())
    };
    let mut batches = futures_util::stream::iter(schemas.chunks(READ_BATCH))
        .map(read_batch)
        .buffer_unordered(jobs.max(1));
    let mut all = BTreeMap::new();
    while let Some(batch) = batches.next().await {
        all.extend(batch?);
    }
    Ok(all)
}

/// The schema text of each of `schemas`.
async fn schema_texts(
    source: &Source<'_>,
    base: &Target,
    schemas: &[String],
    jobs: usize,
) -> anyhow::Result<BTreeMap<String, String>> {
    Ok(read_schemas(source, base, schemas, jobs)
        .await?
        .into_iter()
        .map(|(name, schema)| (name, schema.render()))
        .collect())
}

/// Every schema's text and its fingerprint (sha256), by schema.
type Texts = BTreeMap<String, (String, String)>;

/// sha256 of every schema's text. Schemas whose run did not end verified are read again,
/// in batches that each take one pass over the catalogs; for those, one schema of each
/// fingerprint is returned as read.
async fn fingerprints(
    source: &Source<'_>,
    base: &Target,
    results: &mut [(SchemaOutcome, Option<String>)],
    jobs: usize,
) -> anyhow::Result<(Texts, BTreeMap<String, Schema>)> {
    let unread: Vec<String> = results
        .iter()
        .filter(|(_, text)| text.is_none())
        .map(|(outcome, _)| outcome.schema.clone())
        .collect();
    let mut read: BTreeMap<String, String> = BTreeMap::new();
    let mut by_fingerprint: BTreeMap<String, Schema> = BTreeMap::new();
    if !unread.is_empty() {
        for (name, schema) in read_schemas(source, base, &unread, jobs).await? {
            let text = schema.render();
            by_fingerprint
                .entry(crate::manifest::sha256_hex(text.as_bytes()))
                .or_insert(schema);
            read.insert(name, text);
        }
    }
    let mut texts = BTreeMap::new();
    for (outcome, text) in results.iter_mut() {
        let text = match text.take() {
            Some(text) => text,
            None => read.remove(&outcome.schema).unwrap_or_default(),
        };
        let fingerprint = crate::manifest::sha256_hex(text.as_bytes());
        texts.insert(outcome.schema.clone(), (fingerprint, text));
    }
    Ok((texts, by_fingerprint))
}

/// The structure checks `app verify` runs (drift from the snapshot, the tenancy rules) for
/// the schemas skipped as already at the target: once per distinct schema text, since the
/// checks depend on the text alone. A schema whose text fails them is marked failed.
#[allow(clippy::too_many_arguments)]
async fn verify_skipped(
    source: &Source<'_>,
    config: &Config,
    base: &Target,
    options: &Options,
    skipped: &BTreeSet<String>,
    texts: &Texts,
    read: &BTreeMap<String, Schema>,
    results: &mut [(SchemaOutcome, Option<String>)],
) -> anyhow::Result<()> {
    if skipped.is_empty() {
        return Ok(());
    }
    let expected = options
        .target
        .or_else(|| source.ups().map(|m| m.version).max());
    let position = super::verify::Position {
        version: expected,
        expected,
        at_expected: true,
    };
    let role = match config.row_level_security() {
        Some(rls) if position.isolated(config) => {
            let mut conn = base.connect(false).await?;
            let Conn::Postgres(pg) = &mut conn else {
                anyhow::bail!("--tenant-schemas needs PostgreSQL");
            };
            let role =
                crate::rules::RoleFacts::read(pg, &rls.app_role, &crate::db::Scope::CurrentSchema)
                    .await?;
            conn.close().await;
            Some(role)
        }
        _ => None,
    };
    let mut failed_by_fingerprint: BTreeMap<&str, Option<String>> = BTreeMap::new();
    for (outcome, _) in results
        .iter_mut()
        .filter(|(o, _)| skipped.contains(&o.schema))
    {
        let Some((fingerprint, text)) = texts.get(&outcome.schema) else {
            continue;
        };
        let failure = failed_by_fingerprint
            .entry(fingerprint.as_str())
            .or_insert_with(|| {
                let schema = read.get(fingerprint)?;
                let checks = super::verify::structure_checks(
                    source,
                    config,
                    schema,
                    text,
                    &position,
                    role.as_ref(),
                );
                checks
                    .iter()
                    .find(|c| c.status == super::report::Status::Fail)
                    .map(|c| format!("{}: {}", c.name, c.detail))
            });
        if let Some(failure) = failure {
            outcome.outcome = outcome_word(Outcome::Failed).to_string();
            outcome.ok = false;
            outcome.error = Some(failure.clone());
        }
    }
    Ok(())
}

/// How many schemas one catalog pass reads (bounds the size of one answer).
const READ_BATCH: usize = 250;

/// The schemas whose migrations table holds exactly the source's migrations up to the
/// target, all successful with the same checksums, and that no unfinished run marks.
/// Anything else (pending, dirty, edited, newer, no table) goes through the full sequence,
/// which says what is wrong.
async fn up_to_date_schemas(
    source: &Source<'_>,
    base: &Target,
    options: &Options,
    schemas: &[String],
) -> anyhow::Result<BTreeSet<String>> {
    let wanted: Vec<(i64, Vec<u8>)> = source
        .ups()
        .filter(|m| options.target.is_none_or(|target| m.version <= target))
        .map(|m| (m.version, m.checksum.to_vec()))
        .collect();
    if options.dry_run || wanted.is_empty() {
        return Ok(BTreeSet::new());
    }
    let table = source.migrator.table_name.to_string();
    let mut conn = base.connect(false).await?;
    let Conn::Postgres(pg) = &mut conn else {
        anyhow::bail!("--tenant-schemas needs PostgreSQL");
    };
    let with_table: Vec<String> = sqlx::query_scalar(
        "SELECT n.nspname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relname = $1 AND c.relkind = 'r' AND n.nspname = ANY($2)",
    )
    .bind(&table)
    .bind(schemas)
    .fetch_all(&mut *pg)
    .await?;
    let mut applied: BTreeMap<String, Vec<(i64, Vec<u8>)>> = BTreeMap::new();
    let mut dirty: BTreeSet<String> = BTreeSet::new();
    for batch in with_table.chunks(READ_BATCH) {
        let sql: Vec<String> = batch
            .iter()
            .map(|schema| {
                format!(
                    "SELECT {}::text, version, checksum, success FROM {}.{}",
                    crate::db::literal(schema),
                    quote(schema),
                    quote(&table)
                )
            })
            .collect();
        let rows: Vec<(String, i64, Vec<u8>, bool)> = sqlx::query_as(sqlx::AssertSqlSafe(
            sql.join(" UNION ALL ") + " ORDER BY 1, 2",
        ))
        .fetch_all(&mut *pg)
        .await?;
        for (schema, version, checksum, success) in rows {
            if !success {
                dirty.insert(schema.clone());
            }
            applied.entry(schema).or_default().push((version, checksum));
        }
    }
    conn.close().await;
    Ok(applied
        .into_iter()
        .filter(|(schema, rows)| {
            *rows == wanted
                && !dirty.contains(schema)
                && !super::marker_path(&options.backup_dir, &base.in_schema(schema).label())
                    .exists()
        })
        .map(|(schema, _)| schema)
        .collect())
}

/// Where the fan-out's summary goes by default.
pub fn summary_path(options: &Options, base: &Target) -> PathBuf {
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%S%.3fZ")
        .to_string();
    options.report.clone().unwrap_or_else(|| {
        options
            .backup_dir
            .join(format!("{}-{stamp}.schemas.json", base.label()))
    })
}
