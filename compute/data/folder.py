"""Your own target images: `folder:PATH` wherever a dataset name is accepted, variants too (`folder:PATH+lowres(16)`).

Layouts (decided by the folder itself):
- `PATH/train/CLASS/IMAGE` and `PATH/test/CLASS/IMAGE`: your split; both must hold the same class folders.
- `PATH/CLASS/IMAGE`: split per class, deterministically (`FOLDER_SPLIT`: 20% of each class to test, at least
  one image on each side, drawn by a torch.Generator seeded with 0 + the class name's CRC32 over the sorted file
  names, so adding a class leaves the others' splits alone).
Class names are the folder names, sorted; images may sit in sub-folders of a class folder. Names starting with
'.' (.DS_Store, macOS ._ files, .git) are ignored.

Images: the formats the demo's uploads accept (`IMAGE_FORMATS`), any size and mode, mixed. Every image of a
dataset becomes S x S, S = the largest shorter side among its images, at most `MAX_SIZE` (128: 30,000 colour
images take 5.9 GB as float32; the models resize to their own input size anyway): the centred square of each
image is resized to S x S (Pillow's antialiased bilinear), so nothing is stretched. The dataset is grey when
every image is grey, else colour (grey images repeated on 3 channels). Transparency is composited on white,
16-bit grey scaled by 65535, EXIF rotation applied, first frame of animations.

Unreadable or non-image files are refused with their list (`BadImagesError`), or left out with
`skip_bad_images=True` (`Settings.skip_bad_images`, from the CLI's --skip-bad-images or $RTX_SKIP_BAD_IMAGES, passed
down with the data root to every process and Ray task that loads the folder).
Runs are cached under the dataset's spec: change the folder's content and the explorer keeps the old results;
use a new folder name for new data (the fingerprint in `ImageSet.source` shows which content was used).
"""

from __future__ import annotations

import hashlib
import os
import zlib
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm import tqdm

from compute.data.types import DatasetInfo
from compute.errors import RtxError

PREFIX = "folder:"
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF", "PPM")  # as app/uploads.py, the demo's uploads
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jfif", ".mpo", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm",
                  ".pbm", ".pnm")  # only to word the error: a broken photo.jpg is "truncated", notes.txt "not an image"
MAX_SIZE = 128
MAX_PIXELS = 50_000_000  # per image, from the header: larger files are refused like unreadable ones
GREY_MODES = ("1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N")
LISTED_FILES = 10  # bad files named in the one-line error; the exception carries them all


class BadImagesError(RtxError):
    """Files that are not readable images; `files` holds every one, relative to the dataset folder."""

    def __init__(self, message: str, files: tuple[str, ...]):
        super().__init__(message)
        self.files = files


@dataclass(frozen=True)
class SplitRule:
    """How one folder of class folders is split: a test fraction or a fixed number of training images per class."""

    seed: int = 0
    test_fraction: float | None = 0.2
    train_per_class: int | None = None

    def describe(self) -> str:
        if self.train_per_class is not None:
            return f"{self.train_per_class} train images per class, the rest test (seed {self.seed})"
        return f"{self.test_fraction:.0%} of each class to test (seed {self.seed})"

    def minimum(self) -> int:
        """The fewest images a class needs for this rule to leave at least one on each side."""
        return self.train_per_class + 1 if self.train_per_class is not None else 2

    def split(self, files: tuple[Path, ...], class_name: str) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
        """A class's sorted files -> (train, test), reproducible from the seed and the class name alone."""
        generator = torch.Generator().manual_seed(self.seed + zlib.crc32(class_name.encode()))
        order = torch.randperm(len(files), generator=generator).tolist()
        if self.train_per_class is not None:
            n_train = self.train_per_class
        else:
            n_train = len(files) - min(len(files) - 1, max(1, round(len(files) * (self.test_fraction or 0))))
        return tuple(files[i] for i in sorted(order[:n_train])), tuple(files[i] for i in sorted(order[n_train:]))


FOLDER_SPLIT = SplitRule()
USAGE = (f"folder:PATH: your images as PATH/train/CLASS/* + PATH/test/CLASS/*, or PATH/CLASS/* split "
         f"{FOLDER_SPLIT.describe()}; resized to S x S, S = largest shorter side, at most {MAX_SIZE}")


@dataclass(frozen=True)
class FolderScan:
    """What the headers of a dataset folder say: classes, files per split, the common size and channels."""

    root: Path
    layout: str  # "train/test" or the split rule's description
    classes: tuple[str, ...]
    files: dict[str, tuple[tuple[Path, int], ...]]  # split -> ((file, label), ...)
    size: int
    channels: int
    skipped: tuple[str, ...]
    fingerprint: str

    def describe(self) -> str:
        """Where the images came from, for `ImageSet.source`: path, layout, size, content fingerprint."""
        skipped = f", {len(self.skipped)} bad files skipped" if self.skipped else ""
        return f"{self.root} ({self.layout}; {self.size}x{self.size}; content {self.fingerprint}{skipped})"


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _class_dirs(folder: Path, exclude: tuple[str, ...] = ()) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and _visible(p) and p.name not in exclude),
                  key=lambda p: p.name)


def _class_files(folder: Path) -> tuple[Path, ...]:
    """Every visible file under a class folder (sub-folders included), in sorted order."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found.extend(Path(dirpath) / f for f in filenames if not f.startswith("."))
    return tuple(sorted(found))


def _listing(root: Path, rule: SplitRule, exclude: tuple[str, ...] = ()) -> tuple[str, tuple[str, ...], dict[str, dict[str, tuple[Path, ...]]]]:
    """The folder's layout -> (layout, classes, split -> class -> files); the structural errors are raised here."""
    if not root.exists():
        raise RtxError(f"dataset folder {root} does not exist; check the path after folder:")
    if not root.is_dir():
        raise RtxError(f"{root} is a file, not a folder; folder:PATH needs a folder of class folders")
    how = f"lay it out as {root}/CLASS/IMAGE, or {root}/train/CLASS/IMAGE and {root}/test/CLASS/IMAGE"
    if (root / "train").is_dir() or (root / "test").is_dir():
        missing = [s for s in ("train", "test") if not (root / s).is_dir()]
        if missing:
            raise RtxError(f"{root} has {'test' if missing == ['train'] else 'train'}/ but no {missing[0]}/; "
                           f"add {root}/{missing[0]}/CLASS/IMAGE, or move the class folders up to be split automatically")
        dirs = {s: _class_dirs(root / s) for s in ("train", "test")}
        names = {s: [d.name for d in dirs[s]] for s in dirs}
        if names["train"] != names["test"]:
            only = sorted(set(names["train"]) ^ set(names["test"]))
            raise RtxError(f"{root}/train and {root}/test hold different class folders ({', '.join(only[:5])}); "
                           "give both the same classes")
        layout, classes = "train/test", tuple(names["train"])
        files = {s: {d.name: _class_files(d) for d in dirs[s]} for s in dirs}
    else:
        dirs_all = _class_dirs(root, exclude)
        layout, classes = rule.describe(), tuple(d.name for d in dirs_all)
        files = {"all": {d.name: _class_files(d) for d in dirs_all}}
    if not classes:
        raise RtxError(f"{root} has no class folders; {how}")
    if len(classes) == 1:
        raise RtxError(f"{root} has one class folder ({classes[0]}); a classifier needs at least 2: add another")
    empty = sorted({f"{split}/{c}" if split != "all" else c for split, per in files.items()
                    for c, found in per.items() if not found})
    if empty:
        raise RtxError(f"empty class folder(s) in {root}: {', '.join(empty[:LISTED_FILES])}; add images or remove them")
    return layout, classes, files


def _fingerprint(files: dict[str, dict[str, tuple[Path, ...]]], root: Path) -> str:
    """Names, sizes and modification times of every file: changes when the content does (cheap: no reading)."""
    digest = hashlib.sha256()
    for split in sorted(files):
        for name in sorted(files[split]):
            for path in files[split][name]:
                stat = path.stat()
                digest.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:12]


def _header(path: Path) -> tuple[int, int, str]:
    """(width, height, mode) from the header alone; raises ValueError with a short reason for bad files."""
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as image:
            width, height = image.size
            mode = image.mode
    except Image.DecompressionBombError as err:
        raise ValueError("too large") from err
    except Exception as err:  # UnidentifiedImageError, OSError, SyntaxError, struct.error ...
        looks_like_image = path.suffix.lower() in IMAGE_SUFFIXES
        raise ValueError("unreadable or truncated" if looks_like_image else "not an image") from err
    if width < 1 or height < 1 or width * height > MAX_PIXELS:
        raise ValueError(f"{width}x{height} pixels")
    return width, height, mode


def _refuse(root: Path, bad: list[tuple[Path, str]]) -> BadImagesError:
    listed = [f"{path.relative_to(root)} ({why})" for path, why in bad]
    more = f" and {len(listed) - LISTED_FILES} more" if len(listed) > LISTED_FILES else ""
    return BadImagesError(f"{len(listed)} file(s) under {root} are not readable images: "
                          f"{', '.join(listed[:LISTED_FILES])}{more}; remove or re-save them, or pass "
                          "--skip-bad-images to leave them out", tuple(listed))


def scan_folder(root: str | os.PathLike, rule: SplitRule = FOLDER_SPLIT, skip_bad_images: bool = False,
                exclude: tuple[str, ...] = (), size: int | None = None, channels: int | None = None) -> FolderScan:
    """Check a dataset folder and read every image's header (not its pixels); cached while the content is unchanged.

    `exclude` names folders that are not classes; `size` / `channels` fix what is otherwise read from the images;
    `skip_bad_images` leaves unreadable files out instead of refusing the folder (`BadImagesError`).
    """
    root = Path(root).expanduser().resolve()
    layout, classes, files = _listing(root, rule, exclude)
    return _scan(root, rule, skip_bad_images, exclude, size, channels, _fingerprint(files, root))


@lru_cache(maxsize=8)
def _scan(root: Path, rule: SplitRule, skip: bool, exclude: tuple[str, ...], fixed_size: int | None,
          fixed_channels: int | None, fingerprint: str) -> FolderScan:
    layout, classes, files = _listing(root, rule, exclude)
    all_files = [p for per in files.values() for found in per.values() for p in found]
    headers, bad = {}, []
    for path in tqdm(all_files, desc=f"reading {root.name} headers", unit="file", leave=False,
                     disable=len(all_files) < 2_000):
        try:
            headers[path] = _header(path)
        except ValueError as err:
            bad.append((path, str(err)))
    if bad and not skip:
        raise _refuse(root, bad)
    kept = {split: {c: tuple(p for p in found if p in headers) for c, found in per.items()}
            for split, per in files.items()}
    if "all" in kept:
        too_few = sorted(c for c, found in kept["all"].items() if len(found) < rule.minimum())
        if too_few:
            raise RtxError(f"class folder(s) {', '.join(too_few[:LISTED_FILES])} in {root} hold fewer than "
                           f"{rule.minimum()} readable images, too few to split ({rule.describe()}); add images, "
                           "or give a train/ and test/ folder")
        parts = {c: rule.split(found, c) for c, found in kept["all"].items()}
        kept = {"train": {c: parts[c][0] for c in parts}, "test": {c: parts[c][1] for c in parts}}
    emptied = sorted(f"{s}/{c}" for s, per in kept.items() for c, found in per.items() if not found)
    if emptied:
        raise RtxError(f"no readable images left in {', '.join(emptied[:LISTED_FILES])} under {root} once the bad "
                       "files are skipped; add images to them")
    labelled = {s: tuple((p, classes.index(c)) for c in classes for p in kept[s][c]) for s in ("train", "test")}
    size = fixed_size or min(MAX_SIZE, max(min(w, h) for w, h, _ in headers.values()))
    channels = fixed_channels or (1 if all(mode in GREY_MODES for _, _, mode in headers.values()) else 3)
    skipped = tuple(f"{p.relative_to(root)} ({why})" for p, why in bad)
    return FolderScan(root, layout, classes, labelled, size, channels, skipped, fingerprint)


def _as_float_image(image: Image.Image, channels: int) -> Image.Image:
    """Any mode -> 'L' / 'RGB', or 'F' in [0, 1] for 16/32-bit grey; transparency composited on white."""
    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        array = np.asarray(image, dtype=np.float32)
        top = 1.0 if mode == "F" and array.max() <= 1 else 255.0 if mode != "F" and array.max() <= 255 else 65535.0
        grey = np.clip(array / top, 0, 1)
        if channels == 1:
            return Image.fromarray(grey.astype(np.float32), mode="F")
        return Image.fromarray((grey * 255 + 0.5).astype(np.uint8), mode="L").convert("RGB")
    if mode in ("LA", "La", "RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return image.convert("L" if channels == 1 else "RGB")


def decode_image(path: Path, size: int, channels: int) -> np.ndarray:
    """One file -> (channels, size, size) float32 in [0, 1]: its centred square resized to size x size."""
    with Image.open(path, formats=IMAGE_FORMATS) as image:
        image.seek(0)  # first frame of an animation
        if image.format == "JPEG":
            image.draft("L" if channels == 1 else "RGB", (size, size))  # decode at 1/2..1/8 scale when enough
        image = _as_float_image(ImageOps.exif_transpose(image), channels)
    width, height = image.size
    side = min(width, height)
    box = ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)
    square = image.resize((size, size), Image.Resampling.BILINEAR, box=box)
    array = np.asarray(square, dtype=np.float32)
    array = array if square.mode == "F" else array / 255.0
    return (array[None] if array.ndim == 2 else array.transpose(2, 0, 1)).copy()  # (C, S, S)


def load_split(scan: FolderScan, split: str, skip_bad_images: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode one split -> images (N, C, S, S) float32 in [0, 1], labels (N,) int64, in class-then-file order."""
    entries = scan.files[split]
    images = np.empty((len(entries), scan.channels, scan.size, scan.size), dtype=np.float32)
    keep, bad = np.ones(len(entries), dtype=bool), []
    for i, (path, _) in enumerate(tqdm(entries, desc=f"decoding {scan.root.name} {split}", unit="img", leave=False,
                                       disable=len(entries) < 1_000)):
        try:
            images[i] = decode_image(path, scan.size, scan.channels)
        except Exception as err:  # truncated data shows only now: OSError, SyntaxError, zlib.error, ValueError
            keep[i] = False
            bad.append((path, "truncated or corrupt" if isinstance(err, OSError | SyntaxError) else "unreadable"))
    if bad and not skip_bad_images:
        raise _refuse(scan.root, bad)
    if bad:
        tqdm.write(f"{scan.root} {split}: left out {len(bad)} image(s) whose pixels do not decode "
                   f"({', '.join(str(p.relative_to(scan.root)) for p, _ in bad[:LISTED_FILES])})")
    labels = np.array([label for _, label in entries], dtype=np.int64)
    return torch.from_numpy(images[keep]), torch.from_numpy(labels[keep])


def load_folder(scan: FolderScan, split: str, root: Path | None, download: bool,
                skip_bad_images: bool = False) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The registry's loader signature (compute.data.types.Loader) for a scanned folder; root and download unused."""
    images, labels = load_split(scan, split, skip_bad_images)
    return images, labels, scan.describe()


def folder_dataset(name: str, skip_bad_images: bool = False) -> DatasetInfo:
    """`folder:PATH` -> the registry's DatasetInfo for that folder (scanned now: the structural errors show early)."""
    scan = scan_folder(name[len(PREFIX):], skip_bad_images=skip_bad_images)
    return DatasetInfo(name, scan.classes, len(scan.files["train"]), len(scan.files["test"]), scan.channels,
                       scan.size, True, partial(load_folder, scan), split_rule=scan.layout, where=str(scan.root))
