"""The floor for experiment=notes: Nielsen's network.py (chapter 1) as a plain torch script.

    OMP_NUM_THREADS=1 python benchmarks/network_py.py --data-root data [--seed 1]

The same network and training as `python train.py experiment=notes`: 784-30-10 sigmoid neurons,
weights and biases from N(0, 1), inputs pixel/255, the quadratic cost, mini-batches of 10 from the
first 50,000 training images reshuffled each epoch, w <- w - (eta/m) * the summed gradient with
eta = 3.0, 30 epochs, the training file's last 10,000 images scored after every epoch. The
gradient is written out (backpropagation over the mini-batch, a row per example); no
framework, no logging, no checkpoints. Prints each epoch's validation accuracy, and the test
accuracy of the weights of the best validation epoch.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

SIZES, EPOCHS, BATCH, ETA, VALIDATION = (784, 30, 10), 30, 10, 3.0, 10_000


def read_idx(path: Path) -> torch.Tensor:
    """An IDX file's array: a big-endian header of dimensions, then unsigned bytes."""
    data = path.read_bytes()
    dims = data[3]
    shape = np.frombuffer(data, ">u4", dims, offset=4)
    return torch.from_numpy(np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape))


def load(root: Path) -> tuple[torch.Tensor, ...]:
    """Training, validation and test images (a row each, in [0, 1]) and their labels."""
    raw = root / "MNIST" / "raw"
    images = read_idx(raw / "train-images-idx3-ubyte").reshape(-1, 784).float() / 255
    labels = read_idx(raw / "train-labels-idx1-ubyte").long()
    test_images = read_idx(raw / "t10k-images-idx3-ubyte").reshape(-1, 784).float() / 255
    test_labels = read_idx(raw / "t10k-labels-idx1-ubyte").long()
    return (
        images[:-VALIDATION], labels[:-VALIDATION],
        images[-VALIDATION:], labels[-VALIDATION:],
        test_images, test_labels,
    )  # fmt: skip


class Network:
    def __init__(self, generator: torch.Generator) -> None:
        pairs = list(zip(SIZES[:-1], SIZES[1:], strict=True))
        self.weights = [torch.randn(out, into, generator=generator) for into, out in pairs]
        self.biases = [torch.randn(out, generator=generator) for _, out in pairs]

    def feedforward(self, a: torch.Tensor) -> torch.Tensor:
        for w, b in zip(self.weights, self.biases, strict=True):
            a = torch.sigmoid(torch.addmm(b, a, w.T))
        return a

    def update_mini_batch(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One SGD step on the mini-batch's examples (the rows of x; y one-hot rows)."""
        activations, a = [x], x
        for w, b in zip(self.weights, self.biases, strict=True):
            a = torch.sigmoid(torch.addmm(b, a, w.T))
            activations.append(a)
        delta = (a - y) * a * (1 - a)  # BP1 for C_x = 1/2 ||y - a||^2
        step = ETA / len(x)
        for layer in (1, 0):
            previous = activations[layer]
            nabla_w, nabla_b = delta.T @ previous, delta.sum(dim=0)  # BP4, BP3, summed
            if layer:  # BP2, with the weights before this step changes them
                delta = (delta @ self.weights[layer]) * previous * (1 - previous)
            self.weights[layer].sub_(nabla_w, alpha=step)
            self.biases[layer].sub_(nabla_b, alpha=step)

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        return (self.feedforward(images).argmax(dim=1) == labels).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, default=Path("data"))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    start = time.perf_counter()
    train_x, train_y, val_x, val_y, test_x, test_y = load(args.data_root)
    generator = torch.Generator().manual_seed(args.seed)
    network = Network(generator)
    targets = torch.eye(10)[train_y]  # one-hot rows
    best = (-1.0, 0, 0.0)  # validation accuracy, epoch, test accuracy
    for epoch in range(EPOCHS):
        order = torch.randperm(train_y.numel(), generator=generator)
        for index in order.split(BATCH):
            network.update_mini_batch(train_x[index], targets[index])
        validation = network.accuracy(val_x, val_y)
        if validation > best[0]:
            best = (validation, epoch, network.accuracy(test_x, test_y))
        print(f"epoch {epoch}: validation {validation:.4f}", flush=True)
    print(
        f"best validation {best[0]:.4f} at epoch {best[1]}, test {best[2]:.4f}; "
        f"{time.perf_counter() - start:.1f} s in the script"
    )


if __name__ == "__main__":
    main()
