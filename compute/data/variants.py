"""Shape-versus-texture variants of a dataset (the paper's Table 2), usable wherever a dataset name is.

`lowres(r)`: down to r x r and back up (bilinear, antialiased), removing fine detail.
`lowpass(k)`: zero the k highest spatial frequencies of each image through a 2-D FFT.
A dataset spec is `name` or `name+lowres(8)` / `name+lowpass(64)`; `name` may be `folder:PATH`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from compute.errors import RtxError, unknown_name

_SPEC = re.compile(r"^(?P<name>[a-z0-9_]+|folder:.+?)(?:\+(?P<kind>[a-z]+)\((?P<arg>\d+)\))?$")
VARIANTS = ("lowres", "lowpass")


@dataclass(frozen=True)
class Variant:
    kind: str
    arg: int

    @property
    def label(self) -> str:
        """'lowres(10)': how the variant is written in a dataset spec (and stored in `runs.variant`)."""
        return f"{self.kind}({self.arg})"


def split_dataset_spec(spec: str) -> tuple[str, Variant | None]:
    """'fmnist+lowres(8)' -> ('fmnist', Variant('lowres', 8)) by syntax alone (the name is not looked up)."""
    match = _SPEC.match(spec.strip())
    if not match:
        raise RtxError(f"cannot parse dataset {spec!r}; write NAME, NAME+lowres(R) or NAME+lowpass(K)")
    if match["kind"] is None:
        return match["name"], None
    if match["kind"] not in VARIANTS:
        raise unknown_name("variant", match["kind"], VARIANTS)
    return match["name"], Variant(match["kind"], int(match["arg"]))


def lowres(images: torch.Tensor, r: int) -> torch.Tensor:
    """(N, C, H, W) -> same shape, through an r x r bottleneck."""
    size = images.shape[-2:]
    if r <= 0 or r > min(size):
        raise RtxError(f"lowres({r}) needs 0 < r <= {min(size)} for {tuple(size)} images")
    small = F.interpolate(images, size=(r, r), mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(small, size=size, mode="bilinear", align_corners=False).clamp(0, 1)


def frequency_radius(height: int, width: int) -> torch.Tensor:
    """(H, W) radial frequency of each bin of `torch.fft.fft2`, symmetric under f -> -f."""
    fy = torch.fft.fftfreq(height).abs().unsqueeze(1)
    fx = torch.fft.fftfreq(width).abs().unsqueeze(0)
    return torch.sqrt(fy**2 + fx**2)


def lowpass_mask(height: int, width: int, k: int) -> torch.Tensor:
    """(H, W) bool mask of kept bins: all bins whose radius is above the cut are zeroed, at most k of them.

    Ties at the cut radius are kept together, so the mask stays conjugate-symmetric and the result real.
    """
    radius = frequency_radius(height, width).flatten()
    if k <= 0 or k >= radius.numel():
        raise RtxError(f"lowpass({k}) needs 0 < k < {radius.numel()} for {height}x{width} images")
    ordered = torch.sort(radius, descending=True).values
    cut = ordered[k]  # the (k+1)-th largest radius: bins strictly above it are removed
    return (radius <= cut).reshape(height, width)


def lowpass(images: torch.Tensor, k: int) -> torch.Tensor:
    """(N, C, H, W) -> same shape with the top-k spatial frequencies zeroed (not clamped: exact filter)."""
    keep = lowpass_mask(images.shape[-2], images.shape[-1], k).to(images.device)
    spectrum = torch.fft.fft2(images.to(torch.float64))
    return torch.fft.ifft2(spectrum * keep).real.to(images.dtype)


def apply_variant(images: torch.Tensor, variant: Variant | None) -> torch.Tensor:
    if variant is None:
        return images
    return lowres(images, variant.arg) if variant.kind == "lowres" else lowpass(images, variant.arg)
