"""PyTorch anchor for `kiln-cnn bench --net benchmark`: training images/s of the same network on
random 32x32 inputs, measured the same way.

The network: three blocks of 3x3 convolution (64, 128, 256 channels, 'same' padding, bias) ->
batch norm -> ReLU -> 2x2 max pool, then one linear layer 4096 -> 10. Each step: cross-entropy on
fixed random labels, backward, SGD (lr 0.01, momentum 0.9, Nesterov, weight decay 5e-4), and the
loss read back (which waits for the step on a GPU) every `--read-every` steps -- as kiln's
`training_images_per_sec` does. `--precision f16|bf16` trains under `torch.autocast` (f32 master
weights; f16 with a `GradScaler`), the way a PyTorch user asks for half precision.

    python3 benches/bench_net_torch.py --device cpu --batch 128 --steps 20 --warmup 3
    python3 benches/bench_net_torch.py --device cuda --batch 1024 --steps 50 --warmup 10 --precision bf16

Prints one line: `torch benchmark net, batch B, device D, P, loss read every R steps: N training
images/s`.
"""

import argparse
import time

import torch
from torch import nn


def benchmark_net() -> nn.Module:
    layers = []
    channels = 3
    for width in (64, 128, 256):
        layers += [
            nn.Conv2d(channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]
        channels = width
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(256 * 4 * 4, 10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    parser.add_argument("--precision", choices=("f32", "f16", "bf16"), default="f32")
    parser.add_argument("--read-every", type=int, default=1, help="steps per read of the loss")
    args = parser.parse_args()
    if args.read_every < 1:
        parser.error("--read-every must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    net = benchmark_net().to(device)
    optim = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    images = torch.randn(args.batch, 3, 32, 32, device=device)
    labels = (torch.arange(args.batch, device=device) % 10).long()
    loss_fn = nn.CrossEntropyLoss()
    half = {"f16": torch.float16, "bf16": torch.bfloat16}.get(args.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=args.precision == "f16")
    last = args.warmup + args.steps - 1
    started = time.perf_counter()
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            started = time.perf_counter()
        optim.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=half, enabled=half is not None):
            loss = loss_fn(net(images), labels)
        scaler.scale(loss).backward()
        scaler.step(optim)
        scaler.update()
        timed = step + 1 - args.warmup
        if step + 1 == args.warmup or step == last or (timed > 0 and timed % args.read_every == 0):
            loss.item()
    seconds = time.perf_counter() - started
    rate = args.steps * args.batch / seconds
    print(
        f"torch benchmark net, batch {args.batch}, device {args.device}, {args.precision}, "
        f"loss read every {args.read_every} steps: {rate:.0f} training images/s"
    )


if __name__ == "__main__":
    main()
