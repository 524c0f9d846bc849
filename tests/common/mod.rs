//! Helpers shared by the command-line tests.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use std::process::{Command, Output};

/// `$KILN_SHARED` (the project's shared data), or `None` after saying that `what` was skipped.
#[allow(dead_code)]
pub fn shared_dir(what: &str) -> Option<PathBuf> {
    match std::env::var_os("KILN_SHARED") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => {
            eprintln!("SKIPPED: KILN_SHARED is not set, so {what}");
            None
        }
    }
}

/// Runs a kiln binary with `args`, its cache pointed at `cache`.
#[allow(dead_code)]
pub fn run(bin: &str, args: &[&str], cache: &Path) -> Output {
    Command::new(bin)
        .args(args)
        .env("KILN_DATA", cache)
        .output()
        .expect("binary runs")
}

/// Runs `bin` with `leading` arguments (a subcommand, say) then `--data DATA --config CONFIG
/// --out OUT`, its cache pointed at OUT's parent.
#[allow(dead_code)]
pub fn run_on(bin: &str, leading: &[&str], data: &Path, config: &Path, out: &Path) -> Output {
    let mut args = leading.to_vec();
    args.extend([
        "--data",
        data.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    run(bin, &args, out.parent().unwrap())
}

/// Everything the run printed, stdout then stderr.
#[allow(dead_code)]
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Writes `root/colours/{train,test}/class{0,1,2}/*.png`: three noisy colour classes of 8×8
/// images (30 train and 10 test each) and returns the dataset root.
#[allow(dead_code)] // not every test binary uses it
pub fn colours(root: &Path) -> PathBuf {
    colours_sized(root, 8)
}

/// [`colours`] with `side`×`side` images.
#[allow(dead_code)]
pub fn colours_sized(root: &Path, side: u32) -> PathBuf {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let base = [[200u8, 40, 40], [40, 200, 40], [40, 40, 200]];
    for (split, n) in [("train", 30), ("test", 10)] {
        for (c, colour) in base.iter().enumerate() {
            let dir = root.join("colours").join(split).join(format!("class{c}"));
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                let img = image::RgbImage::from_fn(side, side, |_, _| {
                    image::Rgb(colour.map(|v| v.saturating_add_signed(rng.random_range(-40i8..40))))
                });
                img.save(dir.join(format!("{i}.png"))).unwrap();
            }
        }
    }
    root.join("colours")
}
