//! Running an exporter as a child process and measuring it: wall time, CPU time (`wait4`) and
//! peak RSS (the child's own `VmHWM`). Shared by the end-to-end benches.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One child process's resource use.
pub struct Usage {
    pub wall: Duration,
    pub cpu: Duration,
    pub max_rss_kib: i64,
    pub stdout: String,
}

impl Usage {
    /// The last line of the child's stdout that is JSON: an exporter's summary.
    pub fn summary(&self) -> Option<serde_json::Value> {
        self.stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
    }
}

/// Runs `command` to completion (killed at `timeout`): its CPU time from `wait4`, its peak RSS
/// from `/proc`.
pub fn run_child(mut command: Command, timeout: Duration) -> Result<Usage, String> {
    let started = Instant::now();
    let out_file = tempfile::tempfile().map_err(|e| e.to_string())?;
    let out_read = out_file.try_clone().map_err(|e| e.to_string())?;
    let mut child = command
        .stdout(Stdio::from(out_file))
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("could not start {command:?}: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let status_file = format!("/proc/{pid}/status");
    let mut peak_kib = 0i64;
    loop {
        // Peak RSS is read from the child's own VmHWM, not from wait4's ru_maxrss: the child is
        // spawned with vfork semantics from this process, which holds the whole tenant, and the
        // kernel folds that pre-exec high-water mark into ru_maxrss (it would report the bench's
        // size, not the exporter's). VmHWM belongs to the exporter's own address space; it only
        // grows, so the last reading (at most one poll interval before exit) is the peak.
        if let Ok(status) = std::fs::read_to_string(&status_file) {
            if let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            {
                peak_kib = peak_kib.max(kib);
            }
        }
        let mut status = 0;
        // SAFETY: rusage is plain data; wait4 fills it for our own child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let done = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if done == pid {
            let wall = started.elapsed();
            let tv = |t: libc::timeval| {
                Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
            };
            let mut stdout = String::new();
            use std::io::{Read, Seek};
            let mut out_read = out_read;
            let _ = out_read.rewind();
            let _ = out_read.read_to_string(&mut stdout);
            if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                return Err(format!("{command:?} failed (status {status}): {stdout}"));
            }
            return Ok(Usage {
                wall,
                cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
                max_rss_kib: peak_kib,
                stdout,
            });
        }
        if done < 0 {
            return Err(format!("wait4: {}", std::io::Error::last_os_error()));
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{command:?} killed after {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
