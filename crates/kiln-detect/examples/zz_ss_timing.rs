// Scratch timing (not committed): selective search on the first N raccoon images, in memory.
use std::time::Instant;
use kiln_detect::proposals::{selective_search, SelectiveSearchConfig};
fn main() {
    let dir = std::path::Path::new("/tmp/ss/raccoon/images");
    let n: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(20);
    let mut names: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    let images: Vec<_> = names.iter().take(n).map(|p| kiln_data::image_folder::decode_image(p, None).unwrap()).collect();
    let config = SelectiveSearchConfig::default();
    let mut total = 0usize;
    let start = Instant::now();
    let cpu0 = cpu();
    for img in &images { total += selective_search(img, &config).len(); }
    let cpu1 = cpu();
    println!("{} images: wall {:.3} s/img, cpu {:.3} s/img, {} boxes/img", n, start.elapsed().as_secs_f64() / n as f64, (cpu1 - cpu0) / n as f64, total / n);
}
fn cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let f: Vec<&str> = s.rsplit(')').next().unwrap().split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}
