"""Baseline for kiln-knn's speed: CS231n's "no-loop" L2 kNN in NumPy (float32, 1,000-query
chunks) on the same CIFAR-10 ImageFolder kiln reads.

    pip install numpy pillow
    python3 benches/knn_numpy.py PATH/cifar10      # the folder with train/ and test/

Prints the L2 k=1 test accuracy and the seconds spent on distances and the arg-min (image
decoding is not timed).
"""
import os
import sys
import time

import numpy as np
from PIL import Image


def load(split_dir):
    classes = sorted(os.listdir(split_dir))
    xs, ys = [], []
    for label, name in enumerate(classes):
        folder = os.path.join(split_dir, name)
        for f in sorted(os.listdir(folder)):
            xs.append(np.asarray(Image.open(os.path.join(folder, f)).convert("RGB")).reshape(-1))
            ys.append(label)
    return np.stack(xs).astype(np.float32), np.array(ys)


def main():
    root = sys.argv[1]
    x_train, y_train = load(os.path.join(root, "train"))
    x_test, y_test = load(os.path.join(root, "test"))
    start = time.perf_counter()
    train_sq = (x_train ** 2).sum(axis=1)
    predictions = np.empty(len(x_test), dtype=np.int64)
    for i in range(0, len(x_test), 1000):
        q = x_test[i : i + 1000]
        d = (q ** 2).sum(axis=1)[:, None] + train_sq[None, :] - 2.0 * q @ x_train.T
        predictions[i : i + 1000] = y_train[np.argmin(d, axis=1)]
    seconds = time.perf_counter() - start
    print(f"numpy L2 k=1: test accuracy {100 * (predictions == y_test).mean():.2f} % ({seconds:.1f} s)")


if __name__ == "__main__":
    main()
