"""ImageNet100 from JPEG files in the real ImageNet folder layout (written here): only the
100 listed classes are read, evaluation views are the release's Resize + CenterCrop, the
DataLoader workers decode uint8 batches of per-image random resized crops (the same
crops with any number of workers), and a tiny pretraining run goes through on CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF1
from PIL import Image

from vision_benchmarks import data as D
from vision_benchmarks import imagenet as imnet
from vision_benchmarks.augment import AugmentConfig, BatchAugment, normalize
from vision_benchmarks.config import ConfigError, load_config
from vision_benchmarks.train import pretrain

#: (height, width) of the synthetic JPEGs: landscape and portrait, like ImageNet's.
SIZES = [(30, 40), (44, 32), (36, 36)]
COLOURS = [(220, 40, 40), (40, 200, 60), (50, 60, 210)]  # one solid colour per class
STORE, SIZE = 20, 16


def write_imagenet(root, per_class=(3, 2), seed=0, subset=True):
    """``root/{train,val}/<wnid>/*.JPEG``: the first three ImageNet100 classes (solid colour
    per class plus a little noise) and one ImageNet class outside the subset; with
    ``subset``, ``root/imagenet100_subset.txt`` says that only those three are meant."""
    rng = np.random.default_rng(seed)
    wanted = sorted(imnet.imagenet100_classes())[:3]
    root.mkdir(parents=True, exist_ok=True)
    if subset:
        (root / imnet.SUBSET_FILE).write_text("\n".join(wanted) + "\n")
    for split, count in zip(("train", "val"), per_class):
        for c, wnid in enumerate(wanted + ["n99999999"]):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for k in range(count):
                h, w = SIZES[k % len(SIZES)]
                base = np.array(COLOURS[c % 3] if c < 3 else (128, 128, 128), dtype=np.int16)
                pixels = np.clip(base + rng.integers(-6, 7, (h, w, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{wnid}_{k}.JPEG", quality=95)
    return wanted


def _colour_class(images: torch.Tensor) -> torch.Tensor:
    """The class whose colour is nearest to each image's mean colour."""
    means = images.float().mean(dim=(2, 3))
    return torch.cdist(means, torch.tensor(COLOURS, dtype=torch.float32)).argmin(dim=1)


@pytest.fixture
def folder(tmp_path):
    wanted = write_imagenet(tmp_path)
    return tmp_path, wanted


def test_only_the_listed_classes_are_read_as_the_release_eval_view(folder):
    root, wanted = folder
    d = D.load_dataset("imagenet100", root, store_size=STORE, image_size=SIZE)
    assert d.classes == wanted and d.num_classes == 3
    assert d.train.shape == (9, 3, SIZE, SIZE) and d.test.shape == (6, 3, SIZE, SIZE)
    assert d.train_labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and d.memory is d.train
    assert d.test_labels.tolist() == [0, 0, 1, 1, 2, 2]
    images = d.test[:]
    assert images.dtype == torch.uint8 and torch.equal(_colour_class(images), d.test_labels)
    release = T.Compose([T.Resize(STORE), T.CenterCrop(SIZE), T.PILToTensor()])  # the release's val_aug
    path = d.test.samples[3][0]
    with Image.open(path) as image:
        assert torch.equal(d.test[3], release(image.convert("RGB")))
    assert torch.equal(torch.cat(list(d.test.batches(4))), images)  # the in-order pass of the kNN monitor
    small = d.subset(train=4, test=2)
    assert small.train.shape[0] == 4 and small.memory is small.train and small.test_labels.tolist() == [0, 0]


def test_worker_crop_is_the_release_random_resized_crop_on_pil():
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    for box in ([3, 5, 20, 30], [0, 0, 37, 53], [10, 20, 9, 7]):
        expected = TF1.pil_to_tensor(TF1.resized_crop(image, *box, [SIZE, SIZE], antialias=True))
        assert torch.equal(imnet.crop_view(image, box, SIZE), expected)


@pytest.mark.parametrize("equiv_side", [SIZE, STORE])
def test_loader_yields_uint8_batches_of_the_right_classes_independent_of_workers(folder, equiv_side):
    root, _ = folder
    d = D.load_dataset("imagenet100", root, store_size=STORE, image_size=SIZE)
    batches = torch.randperm(9, generator=torch.Generator().manual_seed(0))[:8].view(2, 4)
    kw = dict(size=SIZE, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), n_equiv=2, equiv_side=equiv_side, seed=5)
    decoded = list(imnet.TrainLoader(d.train, workers=2, **kw).epoch(batches, epoch=0))
    assert len(decoded) == 2
    for rows, b in zip(batches, decoded):
        v1, v2 = b.views
        assert v1.shape == v2.shape == (4, 3, SIZE, SIZE) and v1.dtype == torch.uint8
        assert b.equiv.shape == (2, 3, equiv_side, equiv_side) and b.equiv.dtype == torch.uint8
        assert torch.equal(b.labels, d.train_labels[rows])
        for images in (v1, v2, b.equiv):
            assert torch.equal(_colour_class(images), b.labels[: images.shape[0]])
        assert not torch.equal(v1, v2)  # two independent crops per image
        if equiv_side == SIZE:  # the release's equivariance source: the evaluation view
            assert torch.equal(b.equiv, d.train[rows[:2]])
    in_process = list(imnet.TrainLoader(d.train, workers=0, **kw).epoch(batches, epoch=0))
    assert all(torch.equal(a.views[0], b.views[0]) and torch.equal(a.views[1], b.views[1])
               for a, b in zip(decoded, in_process))
    other_epoch = next(imnet.TrainLoader(d.train, workers=0, **kw).epoch(batches, epoch=1))
    assert not torch.equal(other_epoch.views[0], in_process[0].views[0])


def test_decoded_views_skip_the_crop_and_equivariance_sources_follow_equiv_crop():
    still = dict(flip_p=0.0, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, mean=(0.0,) * 3, std=(1.0,) * 3)
    crops = torch.randint(0, 256, (4, 3, SIZE, SIZE), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    aug = BatchAugment(AugmentConfig(size=SIZE, equiv_crop=False, **still))
    torch.testing.assert_close(aug.views(crops, crop=False), normalize(crops.float() / 255, (0,) * 3, (1,) * 3))
    e1, e2 = aug.chunk_views(crops, n_split=2)
    torch.testing.assert_close(e1, crops.float() / 255) and torch.testing.assert_close(e2, crops.float() / 255)
    sources = torch.randint(0, 256, (4, 3, STORE, STORE), dtype=torch.uint8)
    cropping = BatchAugment(AugmentConfig(size=SIZE, scale=(0.2, 0.5), **still))
    e1, _ = cropping.chunk_views(sources, n_split=2, generator=torch.Generator().manual_seed(1))
    assert e1.shape == (4, 3, SIZE, SIZE)


def _tiny(root, *extra):
    return load_config("imagenet100_care", [
        "run.device=cpu", "run.progress=false", "run.channels_last=false", "model.arch=resnet18", "model.width=4",
        f"data.root={json.dumps(str(root))}", f"data.store_size={STORE}", f"augment.size={SIZE}", "data.workers=0",
        "optim.batch_size=4", "method.equiv_batch_size=4", "method.n_split=2", "optim.epochs=1", "knn.k=3",
        *extra,
    ])


@pytest.mark.parametrize("extra", [[], ["augment.equiv_crop=true", "data.workers=1"],
                                   ["method.framework=moco", "moco.queue_size=8", "moco.key_bn_splits=2"]])
def test_a_tiny_imagenet100_pretraining_runs_on_cpu(folder, tmp_path, extra):
    root, _ = folder
    cfg = _tiny(root, *extra)
    results = pretrain(cfg, tmp_path / "run")
    assert results["epochs"] == 1 and 0 <= results["knn_top1"] <= 100
    assert [r["epoch"] for r in results["history"]] == [1] and "equivariance" in results["history"][0]


def test_imagenet100_configs_use_224_px_release_views_and_check_the_stored_size(tmp_path):
    for name in ("imagenet100_simclr", "imagenet100_moco", "imagenet100_care", "imagenet100_care-moco"):
        cfg = load_config(name)
        assert (cfg["augment"]["size"], cfg["data"]["store_size"], cfg["augment"]["equiv_crop"]) == (224, 256, False)
        assert cfg["augment"]["scale"] == [0.2, 1.0]
    with pytest.raises(ConfigError, match="data.store_size=200 must be at least augment.size=224"):
        load_config("imagenet100_care", ["data.store_size=200"])
    with pytest.raises(D.DatasetNotFound, match="train/<wnid>"):
        D.load_dataset("imagenet100", tmp_path / "nowhere")


def test_fewer_than_100_classes_is_an_error_unless_the_subset_is_listed(tmp_path):
    wanted = write_imagenet(tmp_path, subset=False)
    missing = sorted(set(imnet.imagenet100_classes()) - set(wanted))
    with pytest.raises(D.DatasetNotFound, match=r"only 3 of the 100 classes have images in .*train/<wnid>/; "
                                                 rf"97 missing, e.g. {missing[0]}, {missing[1]}") as error:
        D.load_dataset("imagenet100", tmp_path, store_size=STORE, image_size=SIZE)
    assert str(tmp_path / imnet.SUBSET_FILE) in str(error.value)
    (tmp_path / imnet.SUBSET_FILE).write_text(f"{wanted[0]} {wanted[2]}")
    d = D.load_dataset("imagenet100", tmp_path, store_size=STORE, image_size=SIZE)
    assert d.classes == [wanted[0], wanted[2]] and d.test_labels.tolist() == [0, 0, 1, 1]
    (tmp_path / imnet.SUBSET_FILE).write_text(f"{wanted[0]} n99999999")
    with pytest.raises(ValueError, match=f"{imnet.SUBSET_FILE} must list ImageNet100 wnids.*e.g. n99999999"):
        D.load_dataset("imagenet100", tmp_path, store_size=STORE, image_size=SIZE)


def test_the_flat_ilsvrc_val_folder_is_an_error_that_says_to_sort_it(tmp_path):
    wanted = write_imagenet(tmp_path)
    for k, image in enumerate(sorted((tmp_path / "val").rglob("*.JPEG"))):  # as ILSVRC2012_img_val.tar unpacks
        image.rename(tmp_path / "val" / f"ILSVRC2012_val_{k + 1:08d}.JPEG")
    for folder in (tmp_path / "val").iterdir():
        if folder.is_dir():
            folder.rmdir()
    with pytest.raises(D.DatasetNotFound, match=r"no validation images in .*val/<wnid>/ \(8 JPEG files directly"
                                                r".*flat.*sort val/ into <wnid>/ folders"):
        D.load_dataset("imagenet100", tmp_path, store_size=STORE, image_size=SIZE)
    (tmp_path / "val" / wanted[0]).mkdir()  # one class sorted, the others not
    (tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG").rename(tmp_path / "val" / wanted[0] / "a.JPEG")
    with pytest.raises(D.DatasetNotFound, match=rf"only 1 of the 3 classes have images in .*val/<wnid>/; "
                                                 rf"2 missing, e.g. {wanted[1]}, {wanted[2]}$"):
        D.load_dataset("imagenet100", tmp_path, store_size=STORE, image_size=SIZE)
