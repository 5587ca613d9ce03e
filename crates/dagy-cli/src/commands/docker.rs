//! `dagy run --backend docker`: an ECS tier's run in a local container of the worker image, the
//! local twin of the ECS backend (its sizing, plan and failure wording are the ECS backend's).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use dagy_backend_docker::{Container, STOP_GRACE};
use dagy_core::{EcsSettings, FargateSize, Settings};
use dagy_engine::{Executor, HandlerRegistry, RunEnd, RunOptions};
use dagy_store::{RunStatus, RunStore};

use crate::commands::store::StoreKind;
use crate::progress::Progress;

/// The worker image `--backend docker` runs unless `--image` names another.
pub const DEFAULT_IMAGE: &str = "dagy-worker:latest";

/// Where the embedded store's folder is mounted in the container.
const HOME_INSIDE: &str = "/dagy";

/// How often the store is read for a cancel requested from elsewhere (`dagy cancel`, the UI).
const CANCEL_POLL: Duration = Duration::from_secs(1);

/// The settings to plan with: ECS registered, with this machine's Docker as its cluster.
pub fn settings(mut settings: Settings, image: &str) -> Settings {
    settings.ecs = Some(EcsSettings {
        cluster_arn: "local Docker".into(),
        execution_role_arn: None,
        task_role_arn: None,
        worker_image: image.to_string(),
        subnets: Vec::new(),
        security_groups: Vec::new(),
        log_group: String::new(),
    });
    settings
}

/// The handlers a flow may name when it runs in `image`: this CLI's and the `exec:` handlers
/// of the image's own manifest, so a flow naming a command the image does not declare is
/// refused before anything starts.
pub async fn image_catalog(image: &str, registry: &HandlerRegistry) -> anyhow::Result<Vec<String>> {
    let container = Container::new(image, "catalog", FargateSize::SMALL);
    container.check().await?;
    let mut names = dagy_core::HandlerCatalog::handler_names(registry);
    let path = dagy_exec::DEFAULT_MANIFEST_PATH;
    if let Some(text) = dagy_backend_docker::read_file(image, path).await? {
        let manifest = dagy_exec::ExecManifest::parse(&text)
            .with_context(|| format!("the handler manifest {path} in {image}"))?;
        names.extend(
            manifest
                .entries()
                .iter()
                .map(dagy_exec::ExecEntry::handler_name),
        );
    }
    Ok(names)
}

/// The container for `run_id` on `store`: the store's settings as the worker reads them.
fn container(
    image: &str,
    run_id: &str,
    size: FargateSize,
    store: StoreKind,
) -> anyhow::Result<Container> {
    let container = Container::new(image, run_id, size);
    Ok(match store {
        StoreKind::Sqlite => {
            let path = dagy_store_sqlite::default_path()?;
            let home = path
                .parent()
                .context("the run database has no folder")?
                .to_string_lossy()
                .into_owned();
            // The container's process runs as the folder's owner, so it can write the database.
            let owner = std::os::unix::fs::MetadataExt::uid(
                &std::fs::metadata(&home).with_context(|| format!("cannot read {home}"))?,
            );
            let group = std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(&home)?);
            container
                .env("DAGY_STORE", "sqlite")
                .env(dagy_store_sqlite::DAGY_HOME_VAR, HOME_INSIDE)
                .mount(&home, HOME_INSIDE)
                .user(&format!("{owner}:{group}"))
        }
        StoreKind::Dynamodb => {
            let mut container = container.env("DAGY_STORE", "dynamodb");
            for (name, value) in std::env::vars() {
                let passed = name == "DAGY_TABLE_NAME"
                    || name == "DAGY_RUN_RETENTION_DAYS"
                    || name.starts_with("AWS_");
                if passed {
                    container = container.env(&name, &value);
                }
            }
            container
        }
        StoreKind::Memory => bail!(
            "--backend docker needs a store the container can reach: leave out --store memory \
             (the embedded database is mounted into the container) or use --store dynamodb"
        ),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Stopping,
    Killing,
}

/// Runs `run_id` in a container of `image` sized `size` until it ends, and returns the run's
/// final status. The container's log goes to standard error. A Ctrl-C (`options.stop`) or a
/// cancel requested in the store stops the container as `StopTask` would; a container that
/// ended without ending the run (killed for memory, crashed) ends it failed with ECS's words.
pub async fn drive(
    store: Arc<dyn RunStore>,
    kind: StoreKind,
    run_id: &str,
    size: FargateSize,
    image: &str,
    options: &RunOptions,
    progress: &Progress,
) -> anyhow::Result<RunStatus> {
    let container = container(image, run_id, size, kind)?;
    progress.note(&format!(
        "starting {} ({size}) of {image}; its log follows",
        container.name()
    ));
    let mut running = container.start().await?;
    let name = running.name().to_string();
    let waiting = running.wait();
    tokio::pin!(waiting);
    // Running, then stopping (SIGTERM sent, the grace running), then killing.
    let mut phase = Phase::Running;
    let exit = loop {
        let stop = |why: &str, grace: Duration| {
            progress.note(&format!(
                "{why}: stopping {name} (SIGTERM, SIGKILL after {} s)",
                grace.as_secs()
            ));
            let name = name.clone();
            tokio::spawn(async move { dagy_backend_docker::stop(&name, grace).await });
        };
        tokio::select! {
            exit = &mut waiting => break exit?,
            () = options.cancel.cancelled(), if phase != Phase::Killing => {
                stop("cancelling the task in flight", Duration::from_secs(1));
                phase = Phase::Killing;
            }
            () = options.stop.cancelled(), if phase == Phase::Running => {
                stop("interrupted", STOP_GRACE);
                phase = Phase::Stopping;
            }
            () = tokio::time::sleep(CANCEL_POLL), if phase == Phase::Running => {
                if store.get_run(run_id).await?.cancel_requested {
                    stop("a cancel was requested", STOP_GRACE);
                    phase = Phase::Stopping;
                }
            }
        }
    };
    let run = store.get_run(run_id).await?;
    if run.status.is_final() {
        return Ok(run.status);
    }
    let why = exit
        .reason()
        .unwrap_or_else(|| "its worker exited without ending the run".into());
    // The container that held the lease is gone: end the run as its owner.
    let owner = run
        .lease
        .map_or_else(|| "dagy-docker".to_string(), |l| l.owner);
    Executor::new(store.clone(), Arc::new(HandlerRegistry::new()))
        .with_owner(owner)
        .end_run(run_id, RunEnd::Abandoned(&why))
        .await?;
    Ok(store.get_run(run_id).await?.status)
}
