//! Running one attempt of an `exec:` handler: a process started without a shell, in its own
//! process group, fed its input on stdin, its output read from stdout or `DAGY_OUTPUT`.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process_group};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use dagy_engine::executor::CANCEL_GRACE;
use dagy_engine::{TaskContext, TaskError, TaskResult};

use crate::manifest::{ExecEntry, OUTPUT_VAR};

/// The exit code that fails the task for good (`EX_DATAERR` in `sysexits.h`: the input was
/// wrong, and running again on it cannot help). Error type [`PERMANENT_ERROR`].
pub const EXIT_PERMANENT: i32 = 65;
/// The exit code of a temporary failure (`EX_TEMPFAIL`): retried, with its own error type
/// [`TEMPFAIL_ERROR`]. Every other non-zero exit is retried too, as [`FAILED_ERROR`].
pub const EXIT_TEMPFAIL: i32 = 75;

/// A non-zero exit (retryable).
pub const FAILED_ERROR: &str = "ExecFailed";
/// Exit code 75, `EX_TEMPFAIL` (retryable).
pub const TEMPFAIL_ERROR: &str = "ExecTempFail";
/// Exit code 65, `EX_DATAERR` (not retried).
pub const PERMANENT_ERROR: &str = "ExecFailedPermanently";
/// Ended by a signal it did not ask for (the kernel's OOM killer sends SIGKILL); retryable.
pub const KILLED_ERROR: &str = "ExecKilled";
/// Ran past the entry's `timeout_seconds`; its process group was killed (retryable).
pub const TIMED_OUT_ERROR: &str = "ExecTimedOut";
/// Could not be started: a missing or non-executable program is not retried.
pub const SPAWN_ERROR: &str = "ExecSpawnFailed";
/// Exited 0 without a JSON output (not retried).
pub const OUTPUT_ERROR: &str = "InvalidOutput";
/// Stopped by the run's cancel (the engine's own type for a cancelled handler).
pub const CANCELLED_ERROR: &str = "Cancelled";

/// The most bytes read as output (stdout or the `DAGY_OUTPUT` file); more is an error. Dagy
/// stores at most 350 KiB of output, so this only bounds memory.
pub const MAX_OUTPUT_BYTES: usize = 8 * 1024 * 1024;
/// How much of the end of stderr a task error carries.
pub const STDERR_TAIL_BYTES: usize = 2048;
/// A stderr line longer than this is logged in pieces.
const MAX_LOG_LINE: usize = 8 * 1024;
/// How long the readers may take to see the end of stdout and stderr once the process exited,
/// before what is left of its group (children that kept the pipes open) is killed.
const DRAIN: Duration = Duration::from_millis(200);

/// How long a cancelled process has between SIGTERM and SIGKILL: a little less than the
/// engine's [`CANCEL_GRACE`], so the handler reports the cancel itself before the engine
/// abandons it.
pub fn term_grace() -> Duration {
    CANCEL_GRACE.saturating_sub(Duration::from_millis(500))
}

/// Runs one attempt of `entry` with `input` (`{"parameters", "upstream", "args"}`).
pub async fn run_entry(entry: &ExecEntry, ctx: TaskContext, input: Value) -> TaskResult {
    let handler = entry.handler_name();
    let scratch = tempfile::Builder::new()
        .prefix("dagy-exec-")
        .tempdir()
        .map_err(|e| {
            TaskError::new(format!(
                "{handler}: cannot make a folder for {OUTPUT_VAR} in {}: {e}",
                std::env::temp_dir().display()
            ))
            .with_type(SPAWN_ERROR)
        })?;
    let output_file = scratch.path().join("output.json");

    let mut command = Command::new(&entry.argv[0]);
    command
        .args(&entry.argv[1..])
        .envs(&entry.env)
        .env(OUTPUT_VAR, &output_file)
        .env("DAGY_RUN_ID", &ctx.run_id)
        .env("DAGY_TASK_ID", &ctx.task_id)
        .env("DAGY_ATTEMPT", ctx.attempt.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = &entry.cwd {
        command.current_dir(cwd);
    }
    let mut child = command.spawn().map_err(|e| spawn_error(entry, &e))?;
    let group = ProcessGroup::of(&child);
    tracing::debug!(
        run_id = ctx.run_id,
        task_id = ctx.task_id,
        handler,
        pid = child.id(),
        "process started"
    );

    let stdin = child.stdin.take();
    let body = serde_json::to_vec(&input).unwrap_or_else(|_| b"null".to_vec());
    let feeder = tokio::spawn(async move {
        if let Some(mut stdin) = stdin {
            // A process that does not read its input closes the pipe: not an error.
            let _ = stdin.write_all(&body).await;
            let _ = stdin.shutdown().await;
        }
    });
    let stdout = child
        .stdout
        .take()
        .map(|out| tokio::spawn(read_capped(out)));
    let stderr = child.stderr.take().map(|err| {
        let (run_id, task_id, handler) = (ctx.run_id.clone(), ctx.task_id.clone(), handler.clone());
        tokio::spawn(async move { log_lines(err, &run_id, &task_id, &handler).await })
    });

    let limit = match (ctx.deadline, entry.timeout_seconds) {
        (None, Some(seconds)) => Some(Duration::from_secs_f64(seconds)),
        _ => None,
    };
    let ended = wait(&mut child, &group, &ctx, limit).await;
    feeder.abort();
    let (stdout, tail) = drain(&group, stdout, stderr).await;
    group.forget();

    let status = match ended {
        Ended::Exited(status) => status,
        Ended::TimedOut(seconds) => {
            return Err(TaskError::new(format!(
                "{handler}: ran past its timeout_seconds of {seconds} s; its process group was killed{}",
                tail_text(&tail)
            ))
            .with_type(TIMED_OUT_ERROR));
        }
        Ended::Cancelled { killed } => {
            return Err(TaskError::new(format!(
                "{handler}: cancelled; {}{}",
                if killed {
                    format!(
                        "its process group did not exit within {} s of SIGTERM and was killed",
                        term_grace().as_secs_f64()
                    )
                } else {
                    "its process group was sent SIGTERM and exited".to_string()
                },
                tail_text(&tail)
            ))
            .with_type(CANCELLED_ERROR));
        }
        Ended::WaitFailed(e) => {
            return Err(
                TaskError::new(format!("{handler}: cannot wait for the process: {e}"))
                    .with_type(FAILED_ERROR),
            );
        }
    };
    if !status.success() {
        return Err(exit_error(&handler, status, &tail));
    }
    let output = match tokio::fs::read(&output_file).await {
        Ok(bytes) => Source::File(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Source::Stdout(stdout),
        Err(e) => {
            return Err(TaskError::new(format!(
                "{handler}: cannot read its {OUTPUT_VAR} file {}: {e}",
                output_file.display()
            ))
            .with_type(OUTPUT_ERROR));
        }
    };
    parse_output(&handler, output)
}

/// Where a process's output came from.
enum Source {
    Stdout(Captured),
    File(Vec<u8>),
}

/// Decodes a successful process's output as JSON; anything else fails the task for good.
fn parse_output(handler: &str, source: Source) -> TaskResult {
    let (bytes, from) = match source {
        Source::Stdout(Captured {
            bytes,
            truncated: false,
        }) => (bytes, "stdout".to_string()),
        Source::File(bytes) if bytes.len() <= MAX_OUTPUT_BYTES => {
            (bytes, format!("its {OUTPUT_VAR} file"))
        }
        Source::Stdout(_) | Source::File(_) => {
            return Err(invalid_output(
                handler,
                format!(
                    "its output is larger than {MAX_OUTPUT_BYTES} bytes; write large data elsewhere (S3) and output a reference"
                ),
            ));
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid_output(
            handler,
            format!(
                "exited 0 but printed nothing on stdout and wrote no {OUTPUT_VAR} file; print its output as JSON (null for none)"
            ),
        ));
    }
    dagy_core::json::from_slice(&bytes).map_err(|e| {
        let text = String::from_utf8_lossy(&bytes);
        let start: String = text.chars().take(200).collect();
        invalid_output(
            handler,
            format!("{from} is not JSON ({e}); it began {start:?}. Print only the output, as JSON, on stdout (logs go to stderr), or write it to the file named by {OUTPUT_VAR}"),
        )
    })
}

fn invalid_output(handler: &str, why: String) -> TaskError {
    TaskError::permanent(format!("{handler}: {why}")).with_type(OUTPUT_ERROR)
}

/// The task error for a process that did not exit 0.
fn exit_error(handler: &str, status: ExitStatus, tail: &str) -> TaskError {
    let tail = tail_text(tail);
    match (status.code(), status.signal()) {
        (Some(EXIT_PERMANENT), _) => TaskError::permanent(format!(
            "{handler}: exited with code {EXIT_PERMANENT} (EX_DATAERR: not retried){tail}"
        ))
        .with_type(PERMANENT_ERROR),
        (Some(EXIT_TEMPFAIL), _) => TaskError::new(format!(
            "{handler}: exited with code {EXIT_TEMPFAIL} (EX_TEMPFAIL: a temporary failure){tail}"
        ))
        .with_type(TEMPFAIL_ERROR),
        (Some(code), _) => TaskError::new(format!("{handler}: exited with code {code}{tail}"))
            .with_type(FAILED_ERROR),
        (None, signal) => {
            let signal = signal.unwrap_or(0);
            let hint = if signal == 9 {
                " (SIGKILL: the kernel's OOM killer sends it when memory runs out)"
            } else {
                ""
            };
            TaskError::new(format!("{handler}: killed by signal {signal}{hint}{tail}"))
                .with_type(KILLED_ERROR)
        }
    }
}

fn tail_text(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; stderr ends:\n{tail}")
    }
}

fn spawn_error(entry: &ExecEntry, e: &std::io::Error) -> TaskError {
    let handler = entry.handler_name();
    let cwd = entry
        .cwd
        .as_ref()
        .map(|d| format!(" in {}", d.display()))
        .unwrap_or_default();
    let message = format!("{handler}: cannot start {:?}{cwd}: {e}", entry.argv[0]);
    match e.kind() {
        // The image does not have the program (or the folder): running again will not add it.
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
            TaskError::permanent(format!(
                "{message}; check the entry's argv and cwd against the image"
            ))
            .with_type(SPAWN_ERROR)
        }
        _ => TaskError::new(message).with_type(SPAWN_ERROR),
    }
}

/// How the wait for the process ended.
enum Ended {
    Exited(ExitStatus),
    TimedOut(f64),
    Cancelled { killed: bool },
    WaitFailed(std::io::Error),
}

/// Waits for the process, its timeout, or the cancel (SIGTERM to the group, then SIGKILL after
/// [`term_grace`]).
async fn wait(
    child: &mut Child,
    group: &ProcessGroup,
    ctx: &TaskContext,
    limit: Option<Duration>,
) -> Ended {
    let far = Duration::from_secs(100 * 365 * 24 * 3600);
    let timeout = tokio::time::sleep(limit.unwrap_or(far));
    tokio::pin!(timeout);
    tokio::select! {
        status = child.wait() => match status {
            Ok(status) => Ended::Exited(status),
            Err(e) => Ended::WaitFailed(e),
        },
        () = &mut timeout => {
            group.signal(Signal::KILL);
            let _ = child.wait().await;
            Ended::TimedOut(limit.unwrap_or(far).as_secs_f64())
        }
        () = ctx.cancel.cancelled() => {
            group.signal(Signal::TERM);
            match tokio::time::timeout(term_grace(), child.wait()).await {
                Ok(_) => Ended::Cancelled { killed: false },
                Err(_) => {
                    group.signal(Signal::KILL);
                    let _ = child.wait().await;
                    Ended::Cancelled { killed: true }
                }
            }
        }
    }
}

/// Collects stdout and the stderr tail once the process ended. Children it left behind that
/// keep the pipes open are killed with the rest of its group after [`DRAIN`].
async fn drain(
    group: &ProcessGroup,
    stdout: Option<JoinHandle<Captured>>,
    stderr: Option<JoinHandle<String>>,
) -> (Captured, String) {
    let both = async {
        let out = match stdout {
            Some(h) => h.await.unwrap_or_default(),
            None => Captured::default(),
        };
        let tail = match stderr {
            Some(h) => h.await.unwrap_or_default(),
            None => String::new(),
        };
        (out, tail)
    };
    tokio::pin!(both);
    match tokio::time::timeout(DRAIN, &mut both).await {
        Ok(done) => done,
        Err(_) => {
            group.signal(Signal::KILL);
            both.await
        }
    }
}

/// What was read from stdout.
#[derive(Debug, Default)]
struct Captured {
    bytes: Vec<u8>,
    /// More than [`MAX_OUTPUT_BYTES`] was written (the rest was read and dropped).
    truncated: bool,
}

async fn read_capped(mut out: impl AsyncRead + Unpin) -> Captured {
    let mut captured = Captured::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match out.read(&mut buf).await {
            Ok(0) | Err(_) => return captured,
            Ok(n) => {
                if captured.bytes.len() + n <= MAX_OUTPUT_BYTES {
                    captured.bytes.extend_from_slice(&buf[..n]);
                } else {
                    captured.truncated = true;
                }
            }
        }
    }
}

/// Logs every stderr line (through `tracing`, so into the run's log) and returns the last
/// [`STDERR_TAIL_BYTES`] of it.
async fn log_lines(
    mut err: impl AsyncRead + Unpin,
    run_id: &str,
    task_id: &str,
    handler: &str,
) -> String {
    let mut tail = Tail::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let emit = |line: &[u8], tail: &mut Tail| {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\r', '\n']);
        tracing::info!(run_id, task_id, handler, stream = "stderr", "{text}");
        tail.push(text);
    };
    loop {
        let n = match err.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            emit(&line, &mut tail);
        }
        if pending.len() > MAX_LOG_LINE {
            let piece: Vec<u8> = pending.drain(..MAX_LOG_LINE).collect();
            emit(&piece, &mut tail);
        }
    }
    if !pending.is_empty() {
        emit(&pending, &mut tail);
    }
    tail.text()
}

/// The last lines of stderr, at most [`STDERR_TAIL_BYTES`] of them.
#[derive(Default)]
struct Tail {
    lines: VecDeque<String>,
    bytes: usize,
}

impl Tail {
    fn push(&mut self, line: &str) {
        let line: String = if line.len() > STDERR_TAIL_BYTES {
            let mut start = line.len() - STDERR_TAIL_BYTES;
            while !line.is_char_boundary(start) {
                start += 1;
            }
            line[start..].to_string()
        } else {
            line.to_string()
        };
        self.bytes += line.len() + 1;
        self.lines.push_back(line);
        while self.bytes > STDERR_TAIL_BYTES {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.len() + 1,
                None => break,
            }
        }
    }

    fn text(&self) -> String {
        self.lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// The process's group: signalled as a whole, and killed when the attempt is dropped before it
/// ended (the engine abandons a timed-out handler by dropping it).
struct ProcessGroup {
    pgid: Option<Pid>,
}

impl ProcessGroup {
    fn of(child: &Child) -> Self {
        ProcessGroup {
            pgid: child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .and_then(Pid::from_raw),
        }
    }

    fn signal(&self, signal: Signal) {
        if let Some(pgid) = self.pgid {
            // ESRCH (nobody left in the group) is the normal case after an exit.
            let _ = kill_process_group(pgid, signal);
        }
    }

    /// The attempt finished: nothing is left to kill on drop.
    fn forget(mut self) {
        self.pgid = None;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.signal(Signal::KILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_lines_within_its_size() {
        let mut tail = Tail::default();
        for i in 0..1000 {
            tail.push(&format!("line {i}"));
        }
        let text = tail.text();
        assert!(text.len() <= STDERR_TAIL_BYTES, "{}", text.len());
        assert!(text.ends_with("line 999"));
        let mut long = Tail::default();
        long.push(&"é".repeat(5000));
        assert!(long.text().len() <= STDERR_TAIL_BYTES);
    }

    #[test]
    fn exit_codes_map_to_retryability() {
        let status = |code: i32| ExitStatus::from_raw(code << 8);
        let tempfail = exit_error("exec:x", status(75), "");
        assert!(tempfail.retryable && tempfail.error_type == TEMPFAIL_ERROR);
        let permanent = exit_error("exec:x", status(65), "bad row 3");
        assert!(!permanent.retryable && permanent.error_type == PERMANENT_ERROR);
        assert!(
            permanent.message.ends_with("stderr ends:\nbad row 3"),
            "{}",
            permanent.message
        );
        let other = exit_error("exec:x", status(1), "");
        assert!(other.retryable && other.error_type == FAILED_ERROR);
        let killed = exit_error("exec:x", ExitStatus::from_raw(9), "");
        assert!(killed.retryable && killed.error_type == KILLED_ERROR);
        assert!(killed.message.contains("OOM"), "{}", killed.message);
    }

    #[test]
    fn output_must_be_json() {
        let stdout = |text: &str| {
            Source::Stdout(Captured {
                bytes: text.as_bytes().to_vec(),
                truncated: false,
            })
        };
        assert_eq!(
            parse_output("exec:x", stdout(" {\"a\": 1}\n")),
            Ok(serde_json::json!({"a": 1}))
        );
        let err = parse_output("exec:x", stdout("hello")).expect_err("not JSON");
        assert_eq!(err.error_type, OUTPUT_ERROR);
        assert!(!err.retryable);
        assert!(
            err.message.contains("stdout is not JSON"),
            "{}",
            err.message
        );
        assert!(parse_output("exec:x", stdout("\n")).is_err());
        let big = Source::Stdout(Captured {
            bytes: Vec::new(),
            truncated: true,
        });
        assert!(
            parse_output("exec:x", big)
                .expect_err("big")
                .message
                .contains("larger")
        );
    }
}
