//! A child process the harness started, ended by its PID when dropped.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long a process gets between SIGTERM and SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(5);

/// A started process. Dropping it sends SIGTERM to its PID, waits up to [`TERM_GRACE`],
/// then sends SIGKILL; it never signals anything but the PID it started.
#[derive(Debug)]
pub struct Proc {
    what: String,
    child: Child,
    stdout: Option<Collector>,
    stderr: Option<Collector>,
    status: Option<ExitStatus>,
}

#[derive(Debug)]
struct Collector {
    buf: Arc<Mutex<Vec<u8>>>,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    fn start(mut reader: impl Read + Send + 'static) -> Self {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        let thread = thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = reader.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                if let Ok(mut b) = sink.lock() {
                    b.extend_from_slice(&chunk[..n]);
                }
            }
        });
        Self {
            buf,
            thread: Some(thread),
        }
    }

    fn finish(&mut self) -> Vec<u8> {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.buf.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

impl Proc {
    /// Starts `command` (whose stdio the caller has set up) and names it `what` in errors.
    pub fn spawn(what: impl Into<String>, command: &mut Command) -> Result<Self, String> {
        let what = what.into();
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {what}: {e}"))?;
        Ok(Self::spawn_adopted(what, child))
    }

    /// Takes charge of a child started elsewhere (its stdout/stderr, if piped, are collected).
    pub fn spawn_adopted(what: impl Into<String>, mut child: Child) -> Self {
        let stdout = child.stdout.take().map(Collector::start);
        let stderr = child.stderr.take().map(Collector::start);
        Self {
            what: what.into(),
            child,
            stdout,
            stderr,
            status: None,
        }
    }

    /// Starts `argv` with stdin closed and stdout/stderr collected in memory.
    pub fn spawn_argv(argv: &[&str]) -> Result<Self, String> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| "empty command line".to_owned())?;
        Self::spawn(
            argv.join(" "),
            Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process is, for messages.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// The exit status if it has exited (reaping it), `None` while it runs.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, String> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .map_err(|e| format!("cannot wait for {}: {e}", self.what))?;
        }
        Ok(self.status)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` for the process to exit and returns what it printed; a process
    /// still running then is killed and that is an error carrying its output so far.
    pub fn wait_output(mut self, timeout: Duration) -> Result<Output, String> {
        match self.wait_timeout(timeout)? {
            Some(status) => Ok(self.output(status)),
            None => {
                self.kill();
                let status = self.try_wait()?.unwrap_or_default();
                let out = self.output(status);
                Err(format!(
                    "{} still running after {timeout:?}, killed; stdout: {} stderr: {}",
                    self.what,
                    String::from_utf8_lossy(&out.stdout).trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        }
    }

    fn output(&mut self, status: ExitStatus) -> Output {
        Output {
            status,
            stdout: self
                .stdout
                .as_mut()
                .map(Collector::finish)
                .unwrap_or_default(),
            stderr: self
                .stderr
                .as_mut()
                .map(Collector::finish)
                .unwrap_or_default(),
        }
    }

    /// Sends `signal` (a name such as `TERM`) to this process's PID, unless it has exited.
    pub fn signal(&mut self, signal: &str) -> Result<(), String> {
        if self.try_wait()?.is_some() {
            return Ok(());
        }
        // The child is not reaped yet, so its PID cannot have been reused.
        crate::cmd::run(&["kill", "-s", signal, &self.pid().to_string()]).map(drop)
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL; returns the exit status.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        let _ = self.signal("TERM");
        match self.wait_timeout(grace) {
            Ok(Some(status)) => Some(status),
            _ => self.kill(),
        }
    }

    /// SIGKILL and reap; returns the exit status.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.try_wait() {
            return Some(status);
        }
        let _ = self.child.kill();
        let status = self.child.wait().ok();
        self.status = status;
        status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.terminate(TERM_GRACE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_collected() {
        let p =
            Proc::spawn_argv(&["sh", "-c", "echo out; echo err >&2; exit 3"]).expect("spawn sh");
        let out = p.wait_output(Duration::from_secs(10)).expect("sh exits");
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    fn terminate_ends_a_sleeper_by_pid() {
        let mut p = Proc::spawn_argv(&["sleep", "600"]).expect("spawn sleep");
        assert!(p.is_running());
        let status = p.terminate(Duration::from_secs(5)).expect("reaped");
        assert!(!status.success());
        assert!(!p.is_running());
    }

    #[test]
    fn a_hung_process_is_killed_after_the_timeout() {
        let p = Proc::spawn_argv(&["sleep", "600"]).expect("spawn sleep");
        let err = p
            .wait_output(Duration::from_millis(200))
            .expect_err("sleep outlives the timeout");
        assert!(err.contains("still running"), "{err}");
    }
}
