//! Faults of a real process: freeze (SIGSTOP), resume (SIGCONT), kill (SIGKILL).

/// Sends `sig` (`STOP`, `CONT`, `KILL`) to process `pid`; panics if `kill` fails.
pub fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{sig} {pid} failed");
}

/// Resumes a stopped process when the test ends, however it ends (the process's own
/// guard then kills it).
pub struct Thaw(pub u32);

impl Drop for Thaw {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-CONT")
            .arg(self.0.to_string())
            .status();
    }
}
