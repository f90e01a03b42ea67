"""predict on real test images saved as PNG files, beside the model on the same images through the
data module (what evaluate scores): how much is lost in the files' preparation.

    python benchmarks/predict_agreement.py --data-root data [--dataset MNIST] --ckpt <run dir>

Writes the first --count test images of the data set as PNG files (each enlarged 3x, as a user's
picture would be larger), reads them back through predict's preparation (inspection/images.py,
chosen by the checkpoint's data set), and prints the accuracy of both ways and how often they agree.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from common import parser_with_data
from PIL import Image

from mnist_mlp.inspection.classify import best_checkpoint, load, predict
from mnist_mlp.inspection.images import PREPARED_AS, grayscale
from mnist_mlp.training.idx_files import DATASETS


def main() -> None:
    parser = parser_with_data(__doc__.split("\n")[0])
    parser.add_argument("--ckpt", type=Path, required=True, help="a checkpoint, or a run dir")
    parser.add_argument("--count", type=int, default=100)
    args = parser.parse_args()
    model, data = load(best_checkpoint(args.ckpt))
    if data.dataset != args.dataset:
        raise SystemExit(f"--ckpt was trained on {data.dataset}, not {args.dataset}")
    data.root = args.data_root
    data.prepare_data()
    data.setup()
    test_images, labels = (split[: args.count] for split in data.splits["test"])
    with torch.no_grad():
        direct = model(test_images).argmax(1)
    pixels = DATASETS[args.dataset](str(args.data_root), train=False).data[: args.count]
    folder = Path(tempfile.mkdtemp(prefix="mnist-mlp-pngs-"))
    prepared = []
    for index, image in enumerate(pixels.numpy()):
        path = folder / f"{index:03d}.png"
        Image.fromarray(image).resize((84, 84), Image.BILINEAR).save(path)
        with Image.open(path) as picture:
            prepared.append(PREPARED_AS[data.dataset](grayscale(picture)))
    from_files = predict(model, data, prepared).argmax(1)
    accuracy = {
        "predict on PNG files": (from_files == labels).float().mean().item(),
        "the model on the data module's images": (direct == labels).float().mean().item(),
    }
    for way, value in accuracy.items():
        print(f"{args.dataset}, {len(labels)} test images, {way}: {value:.1%}")
    agree = (from_files == direct).float().mean().item()
    gap = abs(np.subtract(*accuracy.values()))
    print(f"the two agree on {agree:.1%}; their accuracies differ by {gap:.1%}")


if __name__ == "__main__":
    main()
