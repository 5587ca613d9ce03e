//! Docker for the container tests: a session that makes sure `docker info` answers (starting
//! `dockerd` through `scripts/lib.sh`'s `ensure_docker` when it does not, and stopping only a
//! daemon it started), and the worker images built once per test process by
//! `scripts/worker-image.sh --examples`.

use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::emulator::workspace;

/// The offline-built worker image.
pub const WORKER_IMAGE: &str = "dagy-worker:latest";
/// The Python example's image (`examples/python-worker`).
pub const PYTHON_IMAGE: &str = "dagy-python-worker:latest";

/// One test's use of Docker. Sessions run one at a time in a process; a session that started
/// `dockerd` stops it (by its pid) when dropped.
pub struct DockerSession {
    _turn: MutexGuard<'static, ()>,
    started: Option<u32>,
}

static TURN: Mutex<()> = Mutex::new(());

impl DockerSession {
    /// Docker answering, or why it cannot (the test should then say so and skip).
    pub fn start() -> Result<DockerSession, String> {
        let turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
        if answers() {
            return Ok(DockerSession {
                _turn: turn,
                started: None,
            });
        }
        let out = Command::new("bash")
            .arg("-c")
            .arg("source scripts/lib.sh && ensure_docker >&2 && echo \"${DOCKERD_PID:-}\"")
            .current_dir(workspace())
            .output()
            .map_err(|e| format!("cannot run bash: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "Docker cannot start here: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(DockerSession {
            _turn: turn,
            started: String::from_utf8_lossy(&out.stdout).trim().parse().ok(),
        })
    }

    /// Builds the worker images (once per process): `scripts/worker-image.sh --examples`.
    pub fn images(&self) -> Result<(), String> {
        static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
        BUILT
            .get_or_init(|| {
                let started = Instant::now();
                let out = Command::new("bash")
                    .arg("scripts/worker-image.sh")
                    .arg("--examples")
                    .current_dir(workspace())
                    .output()
                    .map_err(|e| format!("cannot run scripts/worker-image.sh: {e}"))?;
                eprintln!(
                    "scripts/worker-image.sh --examples: {:.1} s\n{}",
                    started.elapsed().as_secs_f64(),
                    String::from_utf8_lossy(&out.stdout)
                );
                if out.status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "scripts/worker-image.sh failed:\n{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    ))
                }
            })
            .clone()
    }

    /// Runs `docker ARGS`.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run docker {args:?}: {e}"))
    }
}

impl Drop for DockerSession {
    /// Stops the `dockerd` this session started, if it did, and waits for it to exit.
    fn drop(&mut self) {
        let Some(pid) = self.started.take() else {
            return;
        };
        let _ = Command::new("kill").arg(pid.to_string()).status();
        let until = Instant::now() + Duration::from_secs(30);
        while alive(pid) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Whether process `pid` runs (a zombie waiting for its parent to reap it does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit(')').next().unwrap_or("").trim_start();
        !state.starts_with('Z') && !state.starts_with('X')
    })
}

fn answers() -> bool {
    Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success())
}
