"""Caltech101 (the paper's Table 2 target) through torchvision, split 30 training images per class, the rest test.

torchvision's `Caltech101` downloads and unpacks the archive into `<data root>/caltech101/101_ObjectCategories`
(102 folders; `BACKGROUND_Google` is not a class, as in torchvision). It defines no split, so we use the paper's
protocol ("30 images per label", Section 5): 30 training images per class drawn with seed 0 (`compute.data.folder`'s
per-class rule), all others test: 3,030 train / 5,647 test over 101 classes. Images are decoded by the folder
loader: centred square, resized to 128 x 128 (colour; the few grey images are repeated on 3 channels).
"""

from __future__ import annotations

from pathlib import Path

import torch

from compute.data.folder import SplitRule
from compute.data.types import data_root
from compute.errors import RtxError

CALTECH101_SPLIT = SplitRule(seed=0, test_fraction=None, train_per_class=30)
BACKGROUND = "BACKGROUND_Google"
CLASSES = (
    "Faces", "Faces_easy", "Leopards", "Motorbikes", "accordion", "airplanes", "anchor", "ant", "barrel", "bass",
    "beaver", "binocular", "bonsai", "brain", "brontosaurus", "buddha", "butterfly", "camera", "cannon", "car_side",
    "ceiling_fan", "cellphone", "chair", "chandelier", "cougar_body", "cougar_face", "crab", "crayfish", "crocodile",
    "crocodile_head", "cup", "dalmatian", "dollar_bill", "dolphin", "dragonfly", "electric_guitar", "elephant", "emu",
    "euphonium", "ewer", "ferry", "flamingo", "flamingo_head", "garfield", "gerenuk", "gramophone", "grand_piano",
    "hawksbill", "headphone", "hedgehog", "helicopter", "ibis", "inline_skate", "joshua_tree", "kangaroo", "ketch",
    "lamp", "laptop", "llama", "lobster", "lotus", "mandolin", "mayfly", "menorah", "metronome", "minaret",
    "nautilus", "octopus", "okapi", "pagoda", "panda", "pigeon", "pizza", "platypus", "pyramid", "revolver", "rhino",
    "rooster", "saxophone", "schooner", "scissors", "scorpion", "sea_horse", "snoopy", "soccer_ball", "stapler",
    "starfish", "stegosaurus", "stop_sign", "strawberry", "sunflower", "tick", "trilobite", "umbrella", "watch",
    "water_lilly", "wheelchair", "wild_cat", "windsor_chair", "wrench", "yin_yang",
)
TRAIN_SIZE, TEST_SIZE = 30 * len(CLASSES), 8_677 - 30 * len(CLASSES)  # 8,677 images outside the background
IMAGE_SIZE = 128


def categories_folder(root: Path, download: bool) -> Path:
    """`<root>/caltech101/101_ObjectCategories`, through torchvision (which downloads it when asked)."""
    folder = root / "caltech101" / "101_ObjectCategories"
    if not download and not folder.is_dir():  # checked first: torchvision would create an empty caltech101/
        raise RtxError(f"Caltech101 not found under {root} (no caltech101/101_ObjectCategories); "
                       "pass --data-root DIR pointing at it or --download")
    import torchvision.datasets as tvd

    try:
        tvd.Caltech101(str(root), target_type="category", download=download)
    except (RuntimeError, OSError) as err:
        first = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise RtxError(f"Caltech101 not available under {root} ({first}); pass --data-root DIR pointing at it "
                       "or --download") from err
    return folder


def load_caltech101(split: str, root: Path | None, download: bool,
                    skip_bad_images: bool = False) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The registry's loader: (images (N, 3, 128, 128), labels (N,), where) for one split."""
    from compute.data.folder import load_split, scan_folder

    where = data_root(root)
    scan = scan_folder(categories_folder(where, download), CALTECH101_SPLIT, exclude=(BACKGROUND,), size=IMAGE_SIZE,
                       channels=3, skip_bad_images=skip_bad_images)
    if scan.classes != CLASSES:
        raise RtxError(f"{scan.root} holds {len(scan.classes)} categories, not Caltech101's {len(CLASSES)}; "
                       "delete it and pass --download to fetch it again")
    images, labels = load_split(scan, split, skip_bad_images)
    return images, labels, f"torchvision Caltech101 under {where}, {CALTECH101_SPLIT.describe()}"
