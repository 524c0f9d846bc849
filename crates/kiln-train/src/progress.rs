//! Progress bars with rate and ETA for long work. When stderr is not a terminal (a run under
//! `nohup`, a log file, CI) the bar is hidden and a plain line with the same numbers is printed
//! instead, at most every [`PLAIN_EVERY_SECS`] seconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

/// Seconds between the plain progress lines printed when no bar is drawn.
pub const PLAIN_EVERY_SECS: u64 = 60;

/// A progress bar counting items (images, batches, trials) with their rate and an ETA.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
    label: String,
    unit: String,
    /// Whole seconds since `started` when the last plain line was printed.
    last_plain: AtomicU64,
}

impl Progress {
    /// A bar over `total` units of `unit` (e.g. "img"), labelled `label`.
    pub fn new(total: u64, label: &str, unit: &str) -> Self {
        let bar = ProgressBar::new(total);
        let template = format!(
            "{{msg:>12}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{per_sec:>12}} eta {{eta}} {{prefix}}"
        );
        bar.set_style(
            ProgressStyle::with_template(&template)
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(label.to_string());
        Self {
            bar,
            started: Instant::now(),
            label: label.to_string(),
            unit: unit.to_string(),
            last_plain: AtomicU64::new(0),
        }
    }

    /// Advances by `n` units.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        if self.bar.is_hidden() {
            let now = self.started.elapsed().as_secs();
            let last = self.last_plain.load(Ordering::Relaxed);
            if now >= last + PLAIN_EVERY_SECS
                && self
                    .last_plain
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                eprintln!("{}", self.plain_line());
            }
        }
    }

    /// The bar's numbers as one line: `label pos/len unit, rate/s, eta Ns, status`.
    pub fn plain_line(&self) -> String {
        let (pos, len) = (self.bar.position(), self.bar.length().unwrap_or(0));
        let secs = self.elapsed_secs().max(1e-9);
        let rate = pos as f64 / secs;
        let eta = if rate > 0.0 {
            format!("{:.0} s", len.saturating_sub(pos) as f64 / rate)
        } else {
            "?".into()
        };
        let status = self.bar.prefix();
        format!(
            "{} {pos}/{len} {} ({rate:.2}/s, eta {eta}){}{status}",
            self.label,
            self.unit,
            if status.is_empty() { "" } else { " " }
        )
    }

    /// Shows a short status (e.g. the running loss) after the bar.
    pub fn status(&self, text: impl Into<String>) {
        self.bar.set_prefix(text.into());
    }

    /// Prints a line above the bar without breaking it (to stderr when no bar is drawn).
    pub fn println(&self, line: impl AsRef<str>) {
        if self.bar.is_hidden() {
            eprintln!("{}", line.as_ref());
        } else {
            self.bar.println(line);
        }
    }

    /// Units done so far.
    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    /// Seconds since the bar was created.
    pub fn elapsed_secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Removes the bar and returns the elapsed seconds.
    pub fn finish(self) -> f64 {
        self.bar.finish_and_clear();
        self.elapsed_secs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_line_carries_position_rate_and_status() {
        let p = Progress::new(10, "train", "img");
        p.inc(4);
        p.status("loss 0.5");
        let line = p.plain_line();
        assert!(line.starts_with("train 4/10 img ("), "{line}");
        assert!(line.ends_with(" loss 0.5"), "{line}");
    }
}
