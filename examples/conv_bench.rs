//! Forward convolution algorithms side by side: kiln's im2col, FFT and Winograd against Burn's
//! `conv2d` on the compiled CPU backend, on CIFAR-sized layers and large-kernel layers.
//!
//! `cargo run --release --example conv_bench [-- --batch 32 --repeats 5]`
//!
//! Time is the median of `--repeats` runs after one warm-up; peak memory is the largest heap
//! growth during one run (a counting global allocator), so it includes the output and any
//! workspace but not the inputs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use kiln_nets::conv_algorithms::{ConvAlgorithm, ConvShape};

mod common;
use common::flag;

/// The system allocator, counting live and peak bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Median seconds and peak extra bytes of `f` over `repeats` runs after one warm-up.
fn measure(repeats: usize, mut f: impl FnMut()) -> (f64, usize) {
    f();
    let mut times = Vec::new();
    let mut peak = 0;
    for _ in 0..repeats {
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let start = Instant::now();
        f();
        times.push(start.elapsed().as_secs_f64());
        peak = peak.max(PEAK.load(Ordering::Relaxed).saturating_sub(base));
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], peak)
}

fn main() {
    kiln::alloc::tune_allocator();
    let batch = flag("--batch", 32);
    let repeats = flag("--repeats", 5).max(1);
    let device = Device::flex();
    device.seed(0);
    let layers = [
        ("32×32 64→64 3×3", 64, 32, 64, 3),
        ("16×16 128→128 3×3", 128, 16, 128, 3),
        ("8×8 256→256 3×3", 256, 8, 256, 3),
        ("32×32 16→16 7×7", 16, 32, 16, 7),
        ("32×32 16→16 11×11", 16, 32, 16, 11),
    ];
    println!(
        "batch {batch}, median of {repeats}; time in ms (GFLOP/s of the direct method), peak heap growth in MiB"
    );
    println!(
        "{:<20} {:>24} {:>24} {:>24} {:>24} {:>24}",
        "layer", "Burn conv2d (flex)", "im2col", "FFT", "Winograd 2×2", "Winograd 4×4"
    );
    for (name, c, side, o, k) in layers {
        let pad = k / 2;
        let shape = ConvShape::new(batch, c, [side, side], o, [k, k], [pad, pad]);
        let x = Tensor::<4>::random(
            [batch, c, side, side],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let w = Tensor::<4>::random([o, c, k, k], Distribution::Normal(0.0, 0.1), &device);
        let flops = 2.0 * shape.macs() as f64;
        let cell = |(secs, bytes): (f64, usize)| {
            format!(
                "{:>7.2} ({:>5.0}) {:>6.1}",
                secs * 1e3,
                flops / secs / 1e9,
                bytes as f64 / (1 << 20) as f64
            )
        };
        let burn = measure(repeats, || {
            let y = conv2d(
                x.clone(),
                w.clone(),
                None,
                ConvOptions::new([1, 1], [pad, pad], [1, 1], 1),
            );
            // Reading one value forces the computation.
            let _: f32 = y.slice([0..1, 0..1, 0..1, 0..1]).into_scalar();
        });
        let xs = x.to_data().try_to_vec::<f32>().expect("f32 input");
        let ws = w.to_data().try_to_vec::<f32>().expect("f32 weights");
        let mut row = vec![cell(burn)];
        for algorithm in ConvAlgorithm::ALL {
            if !algorithm.supports(&shape) {
                row.push(format!("{:>24}", "—"));
                continue;
            }
            row.push(cell(measure(repeats, || {
                algorithm.run(&shape, &xs, &ws, None).expect("valid shape");
            })));
        }
        println!("{name:<20} {}", row.join(" "));
    }
}
