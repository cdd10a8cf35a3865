from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from nas import DataError
from nas.data import BatchLoader, DataSpec, _sources, load_data, random_crop_flip

from .conftest import SHARED_ARCHIVE
from .helpers import image_ids, make_image_folder, tar_folder


def test_embedded_default_is_balanced_real_cifar():
    data = load_data()
    assert data.classes[:3] == ["airplane", "automobile", "bird"] and data.num_classes == 10
    assert (len(data.train), len(data.val), len(data.test)) == (4500, 500, 1000)
    assert (data.image_size, data.channels) == (32, 3)
    assert torch.bincount(data.val.labels).tolist() == [50] * 10
    assert torch.bincount(data.test.labels).tolist() == [100] * 10
    assert 0.4 < data.mean[0] < 0.55 and 0.2 < data.std[0] < 0.3  # CIFAR-like statistics


def test_split_folder_three_classes_any_size(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=3, size=(40, 30), ext="jpg")
    data = load_data(str(root))
    assert data.classes == ["class0", "class1", "class2"]
    assert data.image_size == 30  # shorter side kept, centre square
    assert (len(data.train) + len(data.val), len(data.test)) == (36, 12)
    assert data.train.images.dtype == torch.uint8 and data.train.images.shape[1:] == (3, 30, 30)


def test_validation_is_disjoint_from_train_and_test(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=3, train=20, test=5)
    data = load_data(DataSpec(str(root), val_fraction=0.25))
    train, val, test = (image_ids(s.images) for s in (data.train, data.val, data.test))
    assert len(train) == 45 and len(val) == 15 and len(test) == 15
    assert not (train & val) and not (train & test) and not (val & test)
    again = load_data(DataSpec(str(root), val_fraction=0.25))
    assert image_ids(again.val.images) == val  # fixed seed: the same split every time
    other = load_data(DataSpec(str(root), val_fraction=0.25, split_seed=1))
    assert image_ids(other.val.images) != val
    assert data.info["counts"] == {"train": 45, "val": 15, "test": 15}
    assert data.info["spec"]["split_seed"] == 0


def test_train_per_class_takes_first_files_and_validates_on_others(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=2, train=10, test=2)
    data = load_data(DataSpec(str(root), train_per_class=4, val_per_class=3))
    # ids are assigned per class in file order: train 0..9 then test 10..11, class 1 from 12
    assert image_ids(data.train.images) == {0, 1, 2, 3, 12, 13, 14, 15}
    assert len(image_ids(data.val.images) & set(range(4, 10))) == 3


def test_test_per_class_reports_on_the_first_test_files_and_trains_on_the_same(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=2, train=10, test=4)
    full = load_data(DataSpec(str(root), val_per_class=3))
    data = load_data(DataSpec(str(root), val_per_class=3, test_per_class=2))
    # ids per class in file order: train 0..9, test 10..13; class 1 from 14
    assert image_ids(full.test.images) == {10, 11, 12, 13, 24, 25, 26, 27}
    assert image_ids(data.test.images) == {10, 11, 24, 25}
    assert image_ids(data.train.images) == image_ids(full.train.images)  # only test shrinks
    assert image_ids(data.val.images) == image_ids(full.val.images)
    with pytest.raises(DataError, match="test_per_class must be >= 1"):
        DataSpec(str(root), test_per_class=0)


def test_same_split_compares_the_split_settings_not_the_source_spelling():
    spec = DataSpec("../shared/data/cifar10-jpg.tar.gz", val_per_class=1)
    assert spec.same_split(DataSpec("/work/shared/data/cifar10-jpg.tar.gz", val_per_class=1))
    assert spec.same_split(DataSpec("embedded", val_per_class=1, test_per_class=3))
    assert not spec.same_split(DataSpec(spec.source, val_per_class=2))
    assert not spec.same_split(DataSpec(spec.source, val_per_class=1, split_seed=1))
    assert not spec.same_split(DataSpec(spec.source, val_per_class=1, train_per_class=5))


def test_grayscale_kept_or_expanded(tmp_path):
    root = make_image_folder(tmp_path / "g", classes=2, mode="L")
    gray = load_data(str(root))
    assert gray.channels == 1 and len(gray.mean) == 1
    rgb = load_data(DataSpec(str(root), channels=3))
    assert rgb.channels == 3
    assert torch.equal(rgb.train.images[:, 0], rgb.train.images[:, 2])
    assert torch.equal(rgb.train.images[:, :1], gray.train.images)


def test_flat_folder_gets_a_carved_test_split(tmp_path):
    root = make_image_folder(tmp_path / "f", classes=3, train=16, test=4, layout="flat")
    data = load_data(str(root))
    assert data.info["test_carved"] is True
    ids = [image_ids(s.images) for s in (data.train, data.val, data.test)]
    assert sum(map(len, ids)) == 60 and len(set.union(*ids)) == 60
    assert torch.bincount(data.test.labels).tolist() == [2, 2, 2]


def test_tar_equals_folder(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=3)
    archive = tar_folder(root, tmp_path / "d.tar.gz", prefix="mydata")
    a, b = load_data(str(root)), load_data(str(archive))
    assert a.classes == b.classes
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)


def test_cache_is_reused_and_keyed_by_content(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "d", classes=2)
    first = load_data(str(root))

    def refuse(*args, **kwargs):
        raise AssertionError("decoded again although cached")

    monkeypatch.setattr(_sources, "decode_images", refuse)
    second = load_data(str(root))
    assert torch.equal(first.train.images, second.train.images)
    # new content, new key: the cache is rebuilt (and here refused, proving it)
    (root / "train" / "class0" / "0000.png").write_bytes(
        (root / "train" / "class1" / "0000.png").read_bytes()
    )
    with pytest.raises(AssertionError, match="decoded again"):
        load_data(str(root))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.mkdir(), "has no images"),
        (lambda p: None, "data source not found"),
        (lambda p: p.write_text("hello"), "is a file but not a .tar"),
        (lambda p: (p.mkdir(), (p / "a.png").write_bytes(b"x")), "not laid out as an ImageFolder"),
    ],
)
def test_bad_sources(tmp_path, make, message):
    path = tmp_path / "src"
    make(path)
    with pytest.raises(DataError, match=message):
        load_data(str(path))


def test_corrupt_image_is_named(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=2)
    (root / "train" / "class1" / "0003.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=r"cannot decode image .*train/class1/0003.png"):
        load_data(str(root))


def test_single_class_and_truncated_tar(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=1)
    with pytest.raises(DataError, match="at least 2 class"):
        load_data(str(root))
    archive = tar_folder(make_image_folder(tmp_path / "e", classes=2), tmp_path / "e.tar.gz")
    (tmp_path / "cut.tar.gz").write_bytes(archive.read_bytes()[:300])
    with pytest.raises(DataError, match="cannot read archive"):
        load_data(str(tmp_path / "cut.tar.gz"))


def test_synthetic_source_options():
    data = load_data("synthetic:classes=3,size=20,channels=1,train=10,test=4")
    assert (data.num_classes, data.image_size, data.channels) == (3, 20, 1)
    with pytest.raises(DataError, match="bad synthetic option"):
        load_data("synthetic:colors=3")


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_ARCHIVE.exists(), reason="needs ../shared/data/cifar10-jpg.tar.gz")
def test_shared_cifar10_archive_loads_from_cache_fast():
    load_data(str(SHARED_ARCHIVE))  # decodes once (seconds), or hits the session cache
    start = time.perf_counter()
    data = load_data(str(SHARED_ARCHIVE))
    elapsed = time.perf_counter() - start
    assert (len(data.train), len(data.val), len(data.test)) == (45000, 5000, 10000)
    assert elapsed < 2.0, f"cached load took {elapsed:.2f}s"


# -- batches ----------------------------------------------------------------------------


def _loader(data, **kwargs):
    return BatchLoader(data.train, 32, mean=data.mean, std=data.std, **kwargs)


def test_loader_is_reproducible_and_resumable():
    data = load_data("synthetic")
    loader = _loader(data, shuffle=True, augment=True, seed=3)
    loader.set_epoch(2)
    full = list(loader.batches())
    tail = list(loader.batches(start=5))
    assert len(full) == len(loader) and len(tail) == len(full) - 5
    for (a, ya), (b, yb) in zip(full[5:], tail, strict=True):
        assert torch.equal(a, b) and torch.equal(ya, yb)
    loader.set_epoch(3)
    assert not torch.equal(next(iter(loader.batches()))[0], full[0][0])


def test_loader_normalises_and_resizes():
    data = load_data("synthetic")
    x, y = next(iter(_loader(data, resolution=48)))
    assert x.shape == (32, 3, 48, 48) and x.dtype == torch.float32 and y.dtype == torch.int64
    batch = torch.cat([b for b, _ in _loader(data)])
    assert abs(float(batch.mean())) < 0.05 and abs(float(batch.std()) - 1) < 0.05


def test_random_crop_flip_is_a_shift_of_the_reflect_padded_image():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6)
    g = torch.Generator().manual_seed(0)
    out = random_crop_flip(x, pad=2, generator=g)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    for i in range(2):
        windows = [padded[i, :, r : r + 6, c : c + 6] for r in range(5) for c in range(5)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1)) for w in windows)
    same = random_crop_flip(x, pad=0, generator=g)
    assert all(torch.equal(same[i], x[i]) or torch.equal(same[i], x[i].flip(-1)) for i in range(2))


def test_sharded_loader_gives_disjoint_shards():
    data = load_data("synthetic")
    seen = []
    for rank in range(2):
        loader = _loader(data, shuffle=True, shard=(rank, 2))
        seen.append(torch.cat([y for _, y in loader]).numel())
    assert seen == [len(data.train) // 2] * 2
    ids = [np.sort(_loader(data, shuffle=True, shard=(r, 2))._indices().numpy()) for r in (0, 1)]
    assert not set(ids[0]) & set(ids[1])
