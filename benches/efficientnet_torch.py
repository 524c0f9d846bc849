#!/usr/bin/env python3
"""PyTorch's side of `kiln-finetune bench`: EfficientNet-Lite0 (`efficientnet-lite-pytorch`, the
lukemelas-style port kiln's weights come from) on random images, timed the way kiln times it:

- inference: `--infer-batch` images (default 32) through the network in eval mode, scores read;
- training: `--train-batch` images (default 16), cross-entropy on fixed labels (i mod 1000),
  backward, plain SGD step at lr 0.01 (no momentum, no weight decay), loss read every step.

`--warmup` untimed steps first, then the mean over `--steps` timed steps, printed as images/s.

    pip install torch efficientnet-lite-pytorch
    python benches/efficientnet_torch.py --size 224 --steps 5 --warmup 1
"""
import argparse
import time

import torch
from efficientnet_lite_pytorch import EfficientNet


def timed(step, warmup, steps):
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--infer-batch", type=int, default=32)
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = EfficientNet.from_name("efficientnet-lite0", image_size=args.size)

    net.eval()
    images = torch.randn(args.infer_batch, 3, args.size, args.size)

    def infer():
        with torch.no_grad():
            net(images).numpy()

    inference = args.infer_batch / timed(infer, args.warmup, args.steps)

    net.train()
    images = torch.randn(args.train_batch, 3, args.size, args.size)
    labels = torch.arange(args.train_batch) % 1000
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()

    def train():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(images), labels)
        loss.backward()
        optimizer.step()
        loss.item()

    training = args.train_batch / timed(train, args.warmup, args.steps)
    print(
        f"PyTorch {torch.__version__} ({torch.get_num_threads()} threads), EfficientNet-Lite0 at "
        f"{args.size}x{args.size}: inference {inference:.1f} images/s (batch {args.infer_batch}), "
        f"training {training:.1f} images/s (batch {args.train_batch})"
    )


if __name__ == "__main__":
    main()
