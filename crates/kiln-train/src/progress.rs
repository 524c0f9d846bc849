//! Progress bars with rate and ETA for long work (hidden when stderr is not a terminal).

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar counting items (images, batches, trials) with their rate and an ETA.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
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
        }
    }

    /// Advances by `n` units.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
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
