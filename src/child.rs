//! Stopping the processes the demo and the benchmarks start.

use std::process::Child;
use std::time::{Duration, Instant};

/// Waits up to `within` for `child`, already asked to stop, to exit; kills it after that.
pub fn wait_or_kill(child: &mut Child, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}
