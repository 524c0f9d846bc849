//! Helpers shared by the command-line tests.

use std::path::Path;
use std::process::{Command, Output};

/// Runs a kiln binary with `args`, its cache pointed at `cache`.
pub fn run(bin: &str, args: &[&str], cache: &Path) -> Output {
    Command::new(bin)
        .args(args)
        .env("KILN_DATA", cache)
        .output()
        .expect("binary runs")
}

/// Everything the run printed, stdout then stderr.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
