//! Peers in processes of their own (the `test-peer` binary), and what they report on stdout.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::sync::watch;

/// Kills the child when the test ends, whatever happens.
#[derive(Debug)]
pub struct Reaper(pub Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A child whose stdout lines are collected as they come, so a test can wait on what it says
/// (without blocking the thread, which may be running a bus of its own).
#[derive(Debug)]
pub struct Reporter {
    /// The process; dropping it kills it (SIGKILL: no goodbye).
    pub child: Reaper,
    lines: watch::Receiver<Vec<String>>,
}

impl Reporter {
    /// Spawns `command` with stdin and stdout piped (the child runs until killed or its stdin
    /// closes) and waits for its first line, which must start with "ready".
    ///
    /// # Panics
    /// If it cannot be spawned or does not say "ready" within 10 s.
    pub async fn spawn(mut command: Command) -> Reporter {
        let mut child = Reaper(
            command
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn the child"),
        );
        let stdout = child.0.stdout.take().expect("stdout");
        let (sink, lines) = watch::channel(Vec::new());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.send_modify(|lines| lines.push(line));
            }
        });
        let reporter = Reporter { child, lines };
        let ready = reporter
            .wait_until(Duration::from_secs(10), |lines| !lines.is_empty())
            .await;
        assert!(
            ready.first().is_some_and(|l| l.starts_with("ready")),
            "the child did not start: {ready:?}"
        );
        reporter
    }

    /// Waits until `done` holds for the lines so far, or `within` passes; returns the lines.
    pub async fn wait_until(
        &self,
        within: Duration,
        done: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let mut lines = self.lines.clone();
        let _ = tokio::time::timeout(within, lines.wait_for(|l| done(l))).await;
        lines.borrow().clone()
    }

    /// Writes `command` as a line to the child's stdin and waits (at most `within`) for the
    /// next line it prints that starts with `reply`; returns that line.
    ///
    /// # Panics
    /// If the child's stdin is closed or no reply comes in time.
    pub async fn ask(&mut self, command: &str, reply: &str, within: Duration) -> String {
        use std::io::Write;
        let replies = |lines: &[String]| lines.iter().filter(|l| l.starts_with(reply)).count();
        let before = replies(&self.lines.borrow());
        let stdin = self.child.0.stdin.as_mut().expect("the child's stdin");
        writeln!(stdin, "{command}").expect("write to the child");
        stdin.flush().expect("flush to the child");
        let lines = self.wait_until(within, |l| replies(l) > before).await;
        lines
            .iter()
            .filter(|l| l.starts_with(reply))
            .nth(before)
            .unwrap_or_else(|| panic!("no {reply:?} line within {within:?} after {command:?}"))
            .clone()
    }

    /// The numbers of the lines that start with `prefix` and a space ("got 7" → 7), in order.
    pub fn numbers(lines: &[String], prefix: &str) -> Vec<u64> {
        lines
            .iter()
            .filter_map(|line| line.strip_prefix(prefix)?.strip_prefix(' ')?.parse().ok())
            .collect()
    }

    /// Waits until the child has reported `count` numbers under `prefix` or `within` passes,
    /// then a moment longer for any it reports beyond them (a duplicate would show there);
    /// returns them all in order.
    pub async fn reported(&self, prefix: &str, count: usize, within: Duration) -> Vec<u64> {
        let enough = |lines: &[String]| Self::numbers(lines, prefix).len() >= count;
        self.wait_until(within, enough).await;
        let lines = self.wait_until(Duration::from_millis(200), |_| false).await;
        Self::numbers(&lines, prefix)
    }
}
