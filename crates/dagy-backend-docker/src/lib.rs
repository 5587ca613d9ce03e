//! Local Fargate: the local twin of the ECS backend. An ECS tier's run goes to a container of
//! the worker image on this machine's Docker, with the tier's Fargate size as its limits
//! (`--memory`, `--cpus`), the label `dagy.run-id`, and the environment ECS would give it. Its
//! log streams to the terminal; a cancel is `docker stop` with ECS's 30 s grace (SIGTERM, then
//! SIGKILL), as `StopTask` does; a container killed for memory is reported in ECS's words
//! ([`dagy_core::fargate::OUT_OF_MEMORY`]).
//!
//! It drives the `docker` command (Docker's CLI), which must be on `PATH` with a running daemon.
//!
//! ```
//! use dagy_backend_docker::Container;
//! use dagy_core::FargateSize;
//! let container = Container::new("dagy-worker:latest", "run-1", FargateSize::SMALL)
//!     .env("DAGY_STORE", "sqlite");
//! let args = container.run_args();
//! assert!(args.windows(2).any(|w| w == ["--memory", "1024m"]));
//! assert!(args.windows(2).any(|w| w == ["--cpus", "0.5"]));
//! ```

use std::process::Stdio;
use std::time::Duration;

use dagy_core::FargateSize;
use tokio::process::{Child, Command};

/// The label every Dagy container carries, with its run id as the value.
pub const RUN_ID_LABEL: &str = "dagy.run-id";

/// How long `docker stop` waits after SIGTERM before SIGKILL: ECS's `StopTask` grace.
pub const STOP_GRACE: Duration = Duration::from_secs(30);

/// The variable naming the run, as the ECS backend sets it on the task.
pub const RUN_ID_VAR: &str = "DAGY_RUN_ID";

/// Why a container could not be started or watched.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The `docker` command is missing or its daemon does not answer.
    #[error(
        "Docker is not available ({0}): install it (on Debian: apt-get install docker.io), start \
         its daemon (dockerd), or run without --backend docker"
    )]
    Unavailable(String),
    /// The image is not on this machine.
    #[error(
        "the image {0} is not on this machine: build it with scripts/worker-image.sh, or name \
         another with --image"
    )]
    NoImage(String),
    /// A `docker` command failed.
    #[error("docker {command} failed: {message}")]
    Command {
        /// The subcommand.
        command: &'static str,
        /// What it said.
        message: String,
    },
}

/// A container to start for one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    image: String,
    run_id: String,
    size: FargateSize,
    env: Vec<(String, String)>,
    mounts: Vec<(String, String)>,
    user: Option<String>,
}

/// How a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The kernel killed it for using more memory than its limit.
    pub oom_killed: bool,
    /// Its main process's exit code, when it had one.
    pub exit_code: Option<i32>,
}

impl Exit {
    /// Why the run ended, when its worker stopped before recording the end itself (the same
    /// words as an ECS task's `stoppedReason`); `None` for a clean exit.
    pub fn reason(self) -> Option<String> {
        if self.oom_killed {
            return Some(dagy_core::fargate::worker_stopped(
                dagy_core::fargate::OUT_OF_MEMORY,
                self.exit_code,
            ));
        }
        match self.exit_code {
            Some(0) => None,
            Some(137) => Some(dagy_core::fargate::worker_stopped(
                "Essential container in task exited (killed)",
                Some(137),
            )),
            code => Some(dagy_core::fargate::worker_stopped(
                "Essential container in task exited",
                code,
            )),
        }
    }
}

impl Container {
    /// A container of `image` for `run_id`, limited to `size`.
    pub fn new(image: &str, run_id: &str, size: FargateSize) -> Self {
        Container {
            image: image.to_string(),
            run_id: run_id.to_string(),
            size,
            env: vec![(RUN_ID_VAR.to_string(), run_id.to_string())],
            mounts: Vec::new(),
            user: None,
        }
    }

    /// Adds an environment variable.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Mounts the host folder `host` at `inside`.
    pub fn mount(mut self, host: &str, inside: &str) -> Self {
        self.mounts.push((host.to_string(), inside.to_string()));
        self
    }

    /// Runs the container's process as `user` (`uid:gid`), e.g. the owner of a mounted folder.
    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.to_string());
        self
    }

    /// The container's name: `dagy-` and the run id, with characters Docker does not take in a
    /// name replaced by `-`.
    pub fn name(&self) -> String {
        let id: String = self
            .run_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!("dagy-{id}")
    }

    /// The arguments of `docker` that start it (attached, so its log streams to the terminal).
    pub fn run_args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "run",
            "--name",
            &self.name(),
            "--label",
            &format!("{RUN_ID_LABEL}={}", self.run_id),
            "--memory",
            &format!("{}m", self.size.memory_mb),
            // No swap beyond the limit: Fargate has none, so the limit is the limit.
            "--memory-swap",
            &format!("{}m", self.size.memory_mb),
            "--cpus",
            &format!("{}", self.size.vcpu()),
            // The host's network: loopback servers (a local DynamoDB) are reachable as on the host.
            "--network",
            "host",
        ]
        .map(String::from)
        .to_vec();
        if let Some(user) = &self.user {
            args.extend(["--user".to_string(), user.clone()]);
        }
        for (host, inside) in &self.mounts {
            args.extend(["--volume".to_string(), format!("{host}:{inside}")]);
        }
        for (name, value) in &self.env {
            args.extend(["--env".to_string(), format!("{name}={value}")]);
        }
        args.push(self.image.clone());
        args
    }

    /// Checks that Docker answers and has the image.
    pub async fn check(&self) -> Result<(), DockerError> {
        let info = docker(&["info", "--format", "{{.ServerVersion}}"])
            .await
            .map_err(|e| DockerError::Unavailable(e.to_string()))?;
        if !info.status.success() {
            return Err(DockerError::Unavailable(stderr_of(&info)));
        }
        let image = docker(&["image", "inspect", "--format", "{{.Id}}", &self.image]).await?;
        if !image.status.success() {
            return Err(DockerError::NoImage(self.image.clone()));
        }
        Ok(())
    }

    /// Starts the container, its output (both streams) going to this process's standard error. A container
    /// of the same name left by an earlier try of this run is removed first.
    pub async fn start(&self) -> Result<Running, DockerError> {
        self.check().await?;
        let name = self.name();
        let _ = docker(&["rm", "--force", &name]).await?;
        // The worker logs on its standard output (for ECS's awslogs); here that is this
        // process's standard error, so standard output keeps only the command's own results.
        let log = std::os::fd::AsFd::as_fd(&std::io::stderr())
            .try_clone_to_owned()
            .map_err(|e| DockerError::Unavailable(format!("cannot share standard error: {e}")))?;
        let child = Command::new("docker")
            .args(self.run_args())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::inherit())
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| DockerError::Unavailable(e.to_string()))?;
        Ok(Running { name, child })
    }
}

/// A started container.
#[derive(Debug)]
pub struct Running {
    name: String,
    child: Child,
}

impl Running {
    /// The container's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits until the container ends, then reads how it ended and removes it.
    pub async fn wait(&mut self) -> Result<Exit, DockerError> {
        self.child.wait().await.map_err(|e| DockerError::Command {
            command: "run",
            message: e.to_string(),
        })?;
        let inspected = docker(&[
            "inspect",
            "--format",
            "{{.State.OOMKilled}} {{.State.ExitCode}}",
            &self.name,
        ])
        .await?;
        if !inspected.status.success() {
            return Err(DockerError::Command {
                command: "inspect",
                message: stderr_of(&inspected),
            });
        }
        let text = String::from_utf8_lossy(&inspected.stdout);
        let mut words = text.split_whitespace();
        let exit = Exit {
            oom_killed: words.next() == Some("true"),
            exit_code: words.next().and_then(|c| c.parse().ok()),
        };
        let _ = docker(&["rm", "--force", &self.name]).await?;
        Ok(exit)
    }
}

/// The text of the file at `path` in `image` (read by a throwaway container), or `None` when
/// the image has no such file: how the CLI reads the handler manifest baked into a worker image.
pub async fn read_file(image: &str, path: &str) -> Result<Option<String>, DockerError> {
    let out = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "cat",
        image,
        path,
    ])
    .await?;
    if out.status.success() {
        return Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()));
    }
    let message = stderr_of(&out);
    if message.contains("No such file") {
        Ok(None)
    } else {
        Err(DockerError::Command {
            command: "run",
            message,
        })
    }
}

/// Stops the container `name` as ECS's `StopTask` does: SIGTERM, then SIGKILL after `grace`.
/// (A free function, so it can run while [`Running::wait`] waits for the same container.)
pub async fn stop(name: &str, grace: Duration) -> Result<(), DockerError> {
    let seconds = grace.as_secs().to_string();
    let out = docker(&["stop", "--time", &seconds, name]).await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(DockerError::Command {
            command: "stop",
            message: stderr_of(&out),
        })
    }
}

async fn docker(args: &[&str]) -> Result<std::process::Output, DockerError> {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| DockerError::Unavailable(format!("cannot run docker: {e}")))
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_gets_the_tiers_limits_the_label_and_the_run() {
        let size = FargateSize::new(2048, 8192).expect("a valid size");
        let args = Container::new("img:1", "r1", size)
            .env("DAGY_STORE", "sqlite")
            .mount("/home/me/.dagy", "/dagy")
            .user("1000:1000")
            .run_args();
        let pairs: Vec<(String, String)> = args
            .windows(2)
            .map(|w| (w[0].clone(), w[1].clone()))
            .collect();
        for (flag, value) in [
            ("--memory", "8192m"),
            ("--memory-swap", "8192m"),
            ("--cpus", "2"),
            ("--label", "dagy.run-id=r1"),
            ("--env", "DAGY_RUN_ID=r1"),
            ("--env", "DAGY_STORE=sqlite"),
            ("--volume", "/home/me/.dagy:/dagy"),
            ("--user", "1000:1000"),
            ("--network", "host"),
        ] {
            assert!(
                pairs.contains(&(flag.to_string(), value.to_string())),
                "{flag} {value} in {args:?}"
            );
        }
        assert_eq!(args.last().map(String::as_str), Some("img:1"));
    }

    #[test]
    fn a_name_keeps_only_what_docker_takes() {
        let c = Container::new("i", "a b/c:d_e.f-9", FargateSize::SMALL);
        assert_eq!(c.name(), "dagy-a-b-c-d_e.f-9");
    }

    #[test]
    fn an_oom_kill_reads_as_ecs_says_it() {
        let exit = Exit {
            oom_killed: true,
            exit_code: Some(137),
        };
        let why = exit.reason().expect("a reason");
        assert!(why.contains(dagy_core::fargate::OUT_OF_MEMORY), "{why}");
        assert!(why.contains("exit code 137"), "{why}");
        let clean = Exit {
            oom_killed: false,
            exit_code: Some(0),
        };
        assert_eq!(clean.reason(), None);
    }
}
