//! Child processes of a stack: logs to a file (and optionally to the console with a prefix),
//! stopped with SIGTERM then SIGKILL, and never outliving the process that started them.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Where a process's output goes besides its log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// Only the log file (tests).
    Quiet,
    /// Also the console, each line prefixed with the process name (`up`).
    Console,
}

pub struct ManagedProcess {
    name: String,
    child: Child,
    log_path: PathBuf,
    stopped: bool,
}

impl ManagedProcess {
    pub fn spawn(name: &str, mut command: Command, log_path: &Path, echo: Echo) -> Result<Self> {
        let log = File::create(log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        // SAFETY: the closure only calls prctl, which is async-signal-safe. It asks the kernel to
        // send SIGTERM to the child when we die, so a killed `up` or test leaves no orphan.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = match echo {
            Echo::Quiet => command
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log.try_clone()?)
                .spawn(),
            Echo::Console => command
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn(),
        }
        .with_context(|| format!("cannot start {name}: {command:?}"))?;
        if echo == Echo::Console {
            let log = Arc::new(Mutex::new(log));
            if let Some(out) = child.stdout.take() {
                tee_lines(name, out, Arc::clone(&log));
            }
            if let Some(err) = child.stderr.take() {
                tee_lines(name, err, log);
            }
        }
        Ok(Self {
            name: name.to_owned(),
            child,
            log_path: log_path.to_owned(),
            stopped: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Everything the process has written so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Asks the process to stop (SIGTERM), and kills it if it has not stopped within `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if self.exited().is_some() {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill has no memory-safety preconditions; the pid is our own child, which
            // we have not reaped yet, so it cannot have been reused.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// Copies `stream` line by line to the log file and to the console as `[name] line`.
fn tee_lines(name: &str, stream: impl Read + Send + 'static, log: Arc<Mutex<File>>) {
    let prefix = format!("[{name:>11}]");
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            {
                let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
                let _ = writeln!(log, "{line}");
            }
            println!("{prefix} {line}");
        }
    });
}

/// True while a process with this pid exists (used by tests to prove nothing was left behind).
pub fn pid_is_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks for existence and permission.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    // A zombie still "exists" for kill(2); it is not running, so look at its state too.
    alive && !is_zombie(pid)
}

fn is_zombie(pid: libc::pid_t) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|s| s == "Z"))
        })
        .unwrap_or(false)
}
