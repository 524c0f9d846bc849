//! What a Burn project outside kiln needs to classify a photo with kiln-nets' EfficientNet-Lite0
//! and its ImageNet weights: preprocessing as the weights expect, and the top classes.
//!
//! ```ignore
//! let net = EfficientNetLiteConfig::lite0(1000).init(&device).load_pytorch(weights)?;
//! let image = preprocess(&image::open(photo)?.to_rgb8(), &device);
//! for (class, probability) in &top_classes(&net, image, 5)[0] {
//!     println!("{probability:.3} {class}");
//! }
//! ```

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;
use image::imageops::{FilterType, resize};
use kiln_nets::{IMAGENET_MEAN, IMAGENET_STD, ImageClassifier};

/// torchvision's evaluation transform for ImageNet weights: shorter side to 256 (bilinear,
/// antialiased), centre crop 224, scale to [0, 1], normalise with ImageNet's mean and standard
/// deviation. Returns `[1, 3, 224, 224]`.
pub fn preprocess(photo: &RgbImage, device: &Device) -> Tensor<4> {
    const RESIZE: f64 = 256.0;
    const CROP: usize = 224;
    let (w, h) = (photo.width() as f64, photo.height() as f64);
    let (new_w, new_h) = if w <= h {
        (RESIZE, (RESIZE * h / w).floor())
    } else {
        ((RESIZE * w / h).floor(), RESIZE)
    };
    let resized = resize(photo, new_w as u32, new_h as u32, FilterType::Triangle);
    let top = ((resized.height() as usize - CROP) as f64 / 2.0).round() as u32;
    let left = ((resized.width() as usize - CROP) as f64 / 2.0).round() as u32;
    let plane = CROP * CROP;
    let mut values = vec![0f32; 3 * plane];
    for y in 0..CROP as u32 {
        for x in 0..CROP as u32 {
            let pixel = resized.get_pixel(left + x, top + y).0;
            for c in 0..3 {
                let v = pixel[c] as f32 / 255.0;
                values[c * plane + (y as usize) * CROP + x as usize] =
                    (v - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
            }
        }
    }
    Tensor::from_data(TensorData::new(values, [1, 3, CROP, CROP]), device)
}

/// The `count` most probable classes of each image, `(class, probability)`, most probable
/// first.
pub fn top_classes<M: ImageClassifier>(
    net: &M,
    images: Tensor<4>,
    count: usize,
) -> Vec<Vec<(usize, f32)>> {
    let probabilities = softmax(net.scores(images), 1);
    let [batch, classes] = probabilities.dims();
    let values: Vec<f32> = probabilities
        .into_data()
        .convert::<f32>()
        .try_to_vec()
        .expect("f32 probabilities");
    (0..batch)
        .map(|b| {
            let row = &values[b * classes..(b + 1) * classes];
            let mut order: Vec<usize> = (0..classes).collect();
            order.sort_by(|&i, &j| row[j].total_cmp(&row[i]));
            order.into_iter().take(count).map(|i| (i, row[i])).collect()
        })
        .collect()
}
