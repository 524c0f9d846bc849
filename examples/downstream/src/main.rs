//! `classify-photo WEIGHTS CLASSES PHOTO…`: the top five ImageNet classes of each photo,
//! with EfficientNet-Lite0 from kiln-nets and nothing else of kiln.
//!
//! ```sh
//! cargo run --release -p kiln-downstream-example -- \
//!     ../shared/pretrained/efficientnet-lite0-57934424.pth \
//!     ../shared/pretrained/imagenet-classes.txt photo.jpg
//! ```

use std::process::ExitCode;

use burn::module::Module;
use burn::tensor::Device;
use kiln_downstream_example::{preprocess, top_classes};
use kiln_nets::EfficientNetLiteConfig;

fn run(args: &[String]) -> Result<(), String> {
    let [weights, classes, photos @ ..] = args else {
        return Err("usage: classify-photo WEIGHTS.pth CLASSES.txt PHOTO…".into());
    };
    if photos.is_empty() {
        return Err("give at least one photo".into());
    }
    let names = std::fs::read_to_string(classes).map_err(|e| format!("{classes}: {e}"))?;
    let names: Vec<&str> = names.lines().collect();
    let device = Device::flex();
    let net = EfficientNetLiteConfig::lite0(names.len())
        .init(&device)
        .load_pytorch(std::path::Path::new(weights))
        .map_err(|e| e.to_string())?
        .valid();
    for photo in photos {
        let image = image::open(photo)
            .map_err(|e| format!("{photo}: {e}"))?
            .to_rgb8();
        println!("{photo}");
        for (class, p) in &top_classes(&net, preprocess(&image, &device), 5)[0] {
            println!("  {:6.2}%  {}", 100.0 * p, names[*class]);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
