//! `sluice run` as a child process: its stdout and log readable line by line as they come,
//! readiness from its `--ready-file`, and stops that are bounded (a hang fails, it never hangs).

use crate::{sluice_bin, udf_dir, WAIT};
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `sluice run`, with its stdout and log lines readable as they come.
pub struct SluiceRun {
    child: Child,
    stdout: mpsc::Receiver<String>,
    log: mpsc::Receiver<String>,
    /// Holds the `--ready-file` (and the state directory, unless the test gave one).
    ready_dir: tempfile::TempDir,
}

impl SluiceRun {
    /// Starts `sluice run FILE` with logs at info level.
    pub fn start(pipeline: &Path) -> Self {
        Self::start_with_udf_dir(pipeline, &udf_dir())
    }

    /// Starts `sluice run FILE --udf-dir DIR` with logs at info level.
    pub fn start_with_udf_dir(pipeline: &Path, udf_dir: &Path) -> Self {
        Self::start_with_args(pipeline, &[OsStr::new("--udf-dir"), udf_dir.as_os_str()])
    }

    /// Starts `sluice run FILE ARGS...` with logs at info level.
    pub fn start_with_args(pipeline: &Path, args: &[&OsStr]) -> Self {
        Self::start_files(&[pipeline], args)
    }

    /// Starts `sluice run FILES... ARGS...` with logs at info level. Unless `ARGS` name a
    /// `--state-dir`, the run gets a fresh one of its own (host id, journals), so tests running
    /// side by side never share a journal.
    pub fn start_files(pipelines: &[&Path], args: &[&OsStr]) -> Self {
        Self::start_wrapped(&[], pipelines, args)
    }

    /// Like [`SluiceRun::start_files`], with `env` added to its environment (the pipelines'
    /// `${VAR}`s).
    pub fn start_with_env(pipelines: &[&Path], args: &[&OsStr], env: &[(&str, &str)]) -> Self {
        Self::start_command(&[], pipelines, args, env)
    }

    /// Like [`SluiceRun::start_files`], run through `wrapper` (a command that executes the rest
    /// of its command line, such as `ip netns exec NS`); empty: none.
    pub fn start_wrapped(wrapper: &[&OsStr], pipelines: &[&Path], args: &[&OsStr]) -> Self {
        Self::start_command(wrapper, pipelines, args, &[])
    }

    fn start_command(
        wrapper: &[&OsStr],
        pipelines: &[&Path],
        args: &[&OsStr],
        env: &[(&str, &str)],
    ) -> Self {
        let ready_dir = tempfile::tempdir().expect("tempdir");
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(sluice_bin());
                command
            }
            None => Command::new(sluice_bin()),
        };
        command.arg("run").args(pipelines).args(args);
        if !args.iter().any(|a| *a == "--state-dir") {
            command
                .arg("--state-dir")
                .arg(ready_dir.path().join("state"));
        }
        let mut child = command
            .arg("--ready-file")
            .arg(ready_dir.path().join("ready"))
            .env("SLUICE_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sluice");
        let stdout = lines(child.stdout.take().expect("stdout"));
        let log = lines(child.stderr.take().expect("stderr"));
        SluiceRun {
            child,
            stdout,
            log,
            ready_dir,
        }
    }

    /// Waits until every source of the run is subscribed and receiving (`sluice run
    /// --ready-file`), failing the test if it has not happened within [`WAIT`] or the process
    /// exited first.
    pub fn wait_ready(&mut self) {
        let file = self.ready_dir.path().join("ready");
        if let Err(err) = try_wait_ready(&mut self.child, &file, WAIT) {
            let log: Vec<String> = self.log.try_iter().collect();
            panic!("{err}; its log:\n{}", log.join("\n"));
        }
    }

    /// Waits for a log line containing `needle`; returns it.
    pub fn wait_for_log(&self, needle: &str) -> String {
        wait_for_line(&self.log, needle)
    }

    /// The next log line, waiting at most until `deadline`.
    pub fn next_log_line(&self, deadline: Instant) -> Option<String> {
        self.log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .ok()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next `n` stdout lines.
    pub fn stdout_lines(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        (0..n)
            .map(|i| {
                let left = deadline.saturating_duration_since(Instant::now());
                self.stdout
                    .recv_timeout(left)
                    .unwrap_or_else(|_| panic!("only {i} of {n} stdout lines arrived"))
            })
            .collect()
    }

    /// Kills the process at once (SIGKILL): no drain, no goodbye.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the process to drain and exit (fails the test if it has not
    /// exited after [`WAIT`]: a hang must not hang CI).
    pub fn stop(mut self) -> ExitStatus {
        terminate(&mut self.child)
    }

    /// Sends SIGTERM, and returns its stderr lines from then on with the exit status.
    pub fn stop_with_log(mut self) -> (ExitStatus, Vec<String>) {
        let status = terminate(&mut self.child);
        let lines = self.log.try_iter().collect();
        (status, lines)
    }

    /// Sends a signal (`TERM`, `INT`...) without waiting.
    pub fn signal(&self, name: &str) {
        signal(&self.child, name);
    }

    /// Waits for the process to exit by itself, at most `limit` (then kills it and fails).
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        wait_exit(&mut self.child, limit)
    }
}

/// Sends signal `name` to `child`.
fn signal(child: &Child, name: &str) {
    let pid = child.id().to_string();
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &pid])
        .status()
        .expect("kill");
    assert!(sent.success(), "kill -{name} {pid}");
}

impl Drop for SluiceRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends SIGTERM to `child` and waits for it to exit (fails the test, after killing it, if it
/// has not exited after [`WAIT`]: a hang must not hang CI).
pub fn terminate(child: &mut Child) -> ExitStatus {
    try_terminate(child, WAIT).unwrap_or_else(|err| panic!("{err}"))
}

/// Waits for `child` to exit by itself, at most `limit` (then kills it and fails the test).
pub fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    try_wait_exit(child, limit).unwrap_or_else(|err| panic!("{err}"))
}

/// Sends SIGTERM to `child` and waits for it to exit, at most `limit` (then kills it: an error).
pub fn try_terminate(child: &mut Child, limit: Duration) -> Result<ExitStatus, String> {
    let pid = child.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .map_err(|e| format!("cannot run kill: {e}"))?;
    if !sent.success() {
        let _ = child.kill();
    }
    try_wait_exit(child, limit)
}

/// Waits for `child` to exit by itself, at most `limit` (then kills it: an error).
pub fn try_wait_exit(child: &mut Child, limit: Duration) -> Result<ExitStatus, String> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the process did not exit within {limit:?} (killed)"
                ));
            }
            Err(err) => return Err(format!("waiting for the process: {err}")),
        }
    }
}

/// Waits until `sluice run --ready-file FILE` wrote `file` (every source subscribed and
/// receiving), at most `limit`; an error if the process exits first or time runs out.
pub fn try_wait_ready(child: &mut Child, file: &Path, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !file.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("sluice exited ({status}) before it was ready"));
        }
        if Instant::now() >= deadline {
            return Err(format!("sluice was not ready within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Lines of a child's output as they come.
pub fn log_lines(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    lines(stream)
}

/// Waits for a line containing `needle` (panics with what was seen if it never comes).
pub fn wait_for_line(lines: &mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push(line),
            Err(_) => panic!("never saw {needle:?}; saw:\n{}", seen.join("\n")),
        }
    }
}

fn lines(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}
