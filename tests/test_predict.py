"""predict reads image files of any size and polarity; evaluate reproduces a run's test scores."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets

from mnist_mlp.inspection import classify, evaluate, images, predict
from tests.conftest import FILES, TINY, run_main, write_dataset, write_idx


def run_app(main: Callable[[], None], *args: str) -> None:
    """A command line through a Hydra app's main, in this process."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(sys, "argv", ["app", *args])
        main()


def shape(label: int) -> np.ndarray:
    """Ten shapes, each filling the middle 20x20 of 28x28 and centred by mass, as MNIST's digits."""
    image = np.zeros((28, 28))
    box = slice(4, 24)
    middle = slice(12, 16)
    ends = (slice(4, 8), slice(20, 24))
    diagonal = np.eye(20, dtype=bool) | np.eye(20, k=1, dtype=bool)
    y, x = np.mgrid[-9.5:10.5, -9.5:10.5]
    if label == 0:
        image[box, box] = 1
        image[6:22, 6:22] = 0
    elif label in (1, 3):
        image[box, middle] = 1
    if label in (2, 3):
        image[middle, box] = 1
    elif label == 4:
        image[box, box] = diagonal | diagonal[::-1]
    elif label == 5:
        image[box, box] = 1
    elif label == 6:
        image[box, ends[0]] = image[box, ends[1]] = 1
    elif label == 7:
        image[ends[0], box] = image[ends[1], box] = 1
    elif label == 8:
        image[box, box] = np.abs(np.abs(x) + np.abs(y) - 9) < 1.5
    elif label == 9:
        image[box, box] = np.abs(np.hypot(x, y) - 8.5) < 1.5
    return image


def shapes(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, count)
    images = np.stack([shape(label) * rng.integers(200, 256) for label in labels])
    return images + rng.integers(0, 20, images.shape) * (images == 0), labels


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained on the shapes, through train.py."""
    root = tmp_path_factory.mktemp("shapes")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for train, count in ((True, 600), (False, 100)):
        images, labels = shapes(count, seed=int(train))
        write_idx(raw / FILES[train][0], images)
        write_idx(raw / FILES[train][1], labels)
    run_dir = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_main(
            f"data.root={root}",
            "data.val_size=100",
            "epochs=3",
            "batch_size=16",
            "model.hidden_sizes=[64]",
            f"hydra.run.dir={run_dir}",
            monkeypatch=monkeypatch,
        )
    return run_dir


def test_predict_reads_pngs_of_any_size_and_polarity(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    images, labels = shapes(20, seed=5)
    for index, image in enumerate(images):
        size = 40 + 7 * index  # 40 to 173 pixels a side
        picture = Image.fromarray(image.astype(np.uint8)).resize((size, size), Image.BILINEAR)
        if index % 2:  # dark digit on a light background, in colour
            picture = Image.fromarray(255 - np.asarray(picture)).convert("RGB")
        picture.save(tmp_path / f"{index:02d}.png")
    (tmp_path / "notes.txt").write_text("not a picture")

    with pytest.raises(SystemExit) as stopped:  # one file was no image
        run_app(predict.main, f"ckpt={run_dir}", f"images={tmp_path}")
    assert stopped.value.code == 1
    out, err = capsys.readouterr()
    said = [int(line.split(": ")[1].split()[0]) for line in out.splitlines() if ".png: " in line]
    model, data = classify.load(classify.best_checkpoint(run_dir))
    normalised = (torch.tensor(images, dtype=torch.float32) / 255 - data.mean) / data.std
    with torch.no_grad():
        direct = model(normalised).argmax(1)
    assert (direct == torch.from_numpy(labels)).float().mean() > 0.9  # it did learn the shapes
    assert said == direct.tolist()
    assert "notes.txt: not an image" in err


def test_a_digit_drawn_in_the_alpha_channel_is_read_like_ink_on_paper(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    images, _ = shapes(6, seed=7)
    for index, image in enumerate(images):
        alpha = Image.fromarray(image.astype(np.uint8)).resize((84, 84), Image.BILINEAR)
        drawn = Image.new("RGBA", alpha.size, (0, 0, 0, 0))  # transparent black, then the ink
        drawn.putalpha(alpha)
        drawn.save(tmp_path / f"alpha{index}.png")
        paper = Image.fromarray(255 - np.asarray(alpha))  # the same ink, black on white
        paper.save(tmp_path / f"paper{index}.png")
    run_app(predict.main, f"ckpt={run_dir}", f"images={tmp_path}")
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    for index in range(6):
        assert (
            lines[str(tmp_path / f"alpha{index}.png")] == lines[str(tmp_path / f"paper{index}.png")]
        )


def test_predict_says_what_it_needs(capsys: pytest.CaptureFixture) -> None:
    usage = "Give images=...; usage: python -m mnist_mlp.inspection.predict"
    with pytest.raises(SystemExit, match=usage):
        run_app(predict.main, "ckpt=x")


def test_a_checkpoint_that_needs_more_than_tensors_is_refused(tmp_path: Path) -> None:
    # A pickle that would call a function when loaded (here a harmless one).
    hostile = tmp_path / "hostile.ckpt"
    torch.save({"state_dict": {}, "payload": print_later}, hostile)
    with pytest.raises(SystemExit, match=r"holds more than tensors and plain values"):
        run_app(predict.main, f"ckpt={hostile}", f"images={tmp_path}")


def print_later() -> None:
    print("this ran")


def test_a_damaged_checkpoint_is_named_in_one_sentence(run_dir: Path, tmp_path: Path) -> None:
    best = classify.best_checkpoint(run_dir)
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(best.read_bytes()[:2000])
    with pytest.raises(SystemExit, match=f"ckpt={damaged} is not a readable mnist-mlp checkpoint"):
        run_app(predict.main, f"ckpt={damaged}", f"images={tmp_path}")


def test_evaluate_reproduces_the_recorded_test_accuracy(
    run_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    run_app(evaluate.main, f"ckpt={run_dir}")
    out = capsys.readouterr().out
    recorded = json.loads((run_dir / "metrics.json").read_text())["test/acc"]
    assert f"test/acc    {recorded:.4f}" in out
    assert "  7 - seven    " in out and out.count(" - ") == 10  # torchvision's class names
    assert list((run_dir / "checkpoints").glob("*.confusion.png"))


def test_evaluate_scores_a_checkpoint_copied_out_of_its_run_dir(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    copied = tmp_path / "best.ckpt"
    copied.write_bytes(classify.best_checkpoint(run_dir).read_bytes())
    run_app(evaluate.main, f"ckpt={copied}")
    recorded = json.loads((run_dir / "metrics.json").read_text())["test/acc"]
    assert f"test/acc    {recorded:.4f}" in capsys.readouterr().out
    assert (tmp_path / "best.ckpt.confusion.png").is_file()


def test_evaluate_in_a_folder_it_cannot_write_still_gives_the_scores(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Image.Image, "save", refuse)
    run_app(evaluate.main, f"ckpt={run_dir}")
    out = capsys.readouterr().out
    recorded = json.loads((run_dir / "metrics.json").read_text())["test/acc"]
    assert f"test/acc    {recorded:.4f}" in out
    assert "confusion matrix  not written to" in out and "(Permission denied)" in out


def test_predict_names_blank_and_oversized_images_and_reads_the_rest(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    images, _ = shapes(1, seed=9)
    Image.fromarray(images[0].astype(np.uint8)).save(tmp_path / "digit.png")
    Image.new("L", (40, 40), 255).save(tmp_path / "blank.png")
    Image.new("L", (100, 100), 0).save(tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 100x100 is then a decompression bomb
    with pytest.raises(SystemExit):
        run_app(predict.main, f"ckpt={run_dir}", f"images={tmp_path}")
    out, err = capsys.readouterr()
    assert "digit.png: " in out and "blank.png" not in out and "huge.png" not in out
    assert "blank.png: blank" in err and "huge.png: more pixels than PIL's" in err


def test_predict_says_when_a_folder_holds_no_images(run_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")  # a broken link
    with pytest.raises(SystemExit, match="holds no files"):
        run_app(predict.main, f"ckpt={run_dir}", f"images={tmp_path}")


def test_a_fashion_image_is_prepared_as_fashion_mnist_made_its_own() -> None:
    """A product already 28 pixels on its longest side, light on dark, comes through as it was;
    prepared as a digit it would be shrunk into 20x20."""
    item = np.zeros((28, 28), dtype=np.float32)
    item[:, 6:22] = np.linspace(0.2, 1.0, 28)[:, None]  # a tall garment, shaded
    torch.testing.assert_close(
        images.fashion_like(item), torch.from_numpy(item), atol=1 / 255, rtol=0
    )
    torch.testing.assert_close(
        images.fashion_like(1 - item), torch.from_numpy(item), atol=1 / 255, rtol=0
    )
    assert images.mnist_like(item).sum(1).nonzero().numel() == 20


def test_predict_on_a_fashion_checkpoint_agrees_with_the_data_module(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = write_dataset(tmp_path / "data", dataset="FashionMNIST", train=300, test=40)
    run_dir = tmp_path / "run"
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_main(
            f"data.root={root}", "data=fashion_mnist", *TINY, "data.val_size=50",
            f"hydra.run.dir={run_dir}", monkeypatch=monkeypatch,
        )  # fmt: skip
    model, data = classify.load(classify.best_checkpoint(run_dir))
    data.prepare_data()
    data.setup()
    test_images, _ = data.splits["test"]
    with torch.no_grad():
        direct = model(test_images).argmax(1)
    pixels = datasets.FashionMNIST(str(root), train=False).data
    folder = tmp_path / "pngs"
    folder.mkdir()
    for index, image in enumerate(pixels):
        Image.fromarray(image.numpy()).resize((56, 56), Image.NEAREST).save(
            folder / f"{index:02d}.png"
        )
    capsys.readouterr()
    run_app(predict.main, f"ckpt={run_dir}", f"images={folder}")
    names = datasets.FashionMNIST.classes
    said = [line.split(": ", 1)[1].split("   ")[0] for line in capsys.readouterr().out.splitlines()]
    assert said == [names[k] for k in direct.tolist()]
