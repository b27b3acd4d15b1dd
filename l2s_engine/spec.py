"""The model spec: one frozen schema shared by a weights directory's config.json and an engine
directory's manifest.json. A preset is an instance of it (data, not code paths).

Axis conventions: 3D sizes are numpy (z, y, x); a coronal slice is (rows, cols) =
(head-foot, lateral) in array index order. The network spacing ``spacing_zyx_mm`` is in the
same numpy order (z, y, x), the reverse of ITK's and ``Geometry.spacing``'s (x, y, z).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import L2SError

SPEC_VERSION = 1
# autoPET's PET grid (z, y, x) in mm: the spacing the paper's networks are trained at
AUTOPET_SPACING_ZYX_MM = (3.0, 2.0364, 2.0364)
STAMP_SPACING = ("re-export with the spacing the networks were trained at, in mm and numpy order z,y,x: "
                 "`l2s-export WEIGHTS_DIR --spacing Z,Y,X -o ENGINE_DIR` (recorded in the engine's manifest; "
                 "the weights are not changed), or retrain with `l2s-train`, which records it")


class SpecError(L2SError):
    """A spec (preset, config.json or manifest) is invalid."""


class MissingSpacingError(SpecError):
    """A spec predates the network spacing field: the runtime cannot tell what grid the
    networks expect, so it refuses rather than guess."""


@dataclass(frozen=True)
class Loc2DSpec:
    """The 2D localisation network and its slice preprocessing.

    Attributes:
        in_slices: adjacent coronal slices stacked as channels (1: the paper; 5: authors' code).
        resize: every coronal slice is resized (bilinear) to (rows, cols) ...
        crop: ... then cropped to rows [r0:r1], cols [c0:c1] (authors' code: 400x400, [40:360, 8:392]).
        suv_window: SUV clipped to this range and mapped linearly to [-1, 1].
        encoder_layers / encoder_channels / stem_width: the Res2Net (26w x 4s) encoder
            (res2net50_26w_4s: (3, 4, 6, 3), (64, 128, 256, 512), 64).
        decoder_channels: the five U-Net decoder stages.
        upsample: "bilinear" (paper) or "nearest" (authors' code).
    """

    in_slices: int = 1
    resize: tuple[int, int] = (400, 400)
    crop: tuple[int, int, int, int] = (40, 360, 8, 392)
    suv_window: tuple[float, float] = (0.0, 15.0)
    encoder_layers: tuple[int, ...] = (3, 4, 6, 3)
    encoder_channels: tuple[int, ...] = (64, 128, 256, 512)
    stem_width: int = 64
    decoder_channels: tuple[int, ...] = (320, 256, 128, 64, 32)
    upsample: str = "bilinear"

    @property
    def slice_shape(self) -> tuple[int, int]:
        """(rows, cols) of the network input."""
        r0, r1, c0, c1 = self.crop
        return (r1 - r0, c1 - c0)


@dataclass(frozen=True)
class Seg3DSpec:
    """The 3D segmentation network and its window preprocessing.

    Attributes:
        filters: channels of the first level, doubled per level.
        levels: resolution levels (levels - 1 max-pool steps).
        norm: "instance" (default), "layer" (one group over C, D, H, W) or "batch".
        patch: sliding-window / training patch size (z, y, x).
        suv_window / ct_window: clipped and mapped linearly to [-1, 1] (PET, CT channels).
    """

    filters: int = 16
    levels: int = 4
    norm: str = "instance"
    patch: tuple[int, int, int] = (128, 192, 160)
    suv_window: tuple[float, float] = (0.0, 15.0)
    ct_window: tuple[float, float] = (-100.0, 250.0)


@dataclass(frozen=True)
class FusionSpec:
    """How the two stages combine at inference (paper rule: p3d > (cue > 0.5 ? 0.1 : 0.5))."""

    rule: str = "paper"
    cue_threshold: float = 0.5
    low_threshold: float = 0.1
    high_threshold: float = 0.5
    step_fraction: float = 0.5  # sliding-window step as a fraction of the patch


@dataclass(frozen=True)
class TrainSpec:
    """Optimisation settings (paper: SGD lr 1e-3 poly 0.9, weight decay 1e-4)."""

    epochs_2d: int = 200
    epochs_3d: int = 500
    batch_2d: int = 32
    batch_3d: int = 2
    iters_2d: int = 250          # batches per epoch
    iters_3d: int = 250
    lr: float = 1e-3
    momentum: float = 0.99
    weight_decay: float = 1e-4
    lesion_fraction_2d: float = 0.2   # share of lesion slices in each 2D batch
    foreground_fraction_3d: float = 0.33  # share of 3D patches centred on a lesion voxel
    rotation_deg: float = 10.0
    dice_weight: float = 1.0      # lambda in L = BCE + lambda * Dice


@dataclass(frozen=True)
class Spec:
    """Everything that defines a trained L2SNet model pair and how to run it.

    Attributes:
        spacing_zyx_mm: the voxel spacing the networks were trained at, (z, y, x) in mm (numpy
            order; ``Geometry.spacing`` is (x, y, z)). Studies at another spacing are resampled
            to it before the networks and their outputs back (``l2s_engine.resample``).
            ``l2s-train`` sets it to the median spacing of its training studies.
    """

    preset: str
    loc2d: Loc2DSpec = field(default_factory=Loc2DSpec)
    seg3d: Seg3DSpec = field(default_factory=Seg3DSpec)
    fusion: FusionSpec = field(default_factory=FusionSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    spacing_zyx_mm: tuple[float, float, float] = AUTOPET_SPACING_ZYX_MM
    version: int = SPEC_VERSION

    def validate(self) -> "Spec":
        """Return self, or raise SpecError naming the first inconsistency."""
        l2, s3 = self.loc2d, self.seg3d
        r0, r1, c0, c1 = l2.crop
        if not (0 <= r0 < r1 <= l2.resize[0] and 0 <= c0 < c1 <= l2.resize[1]):
            raise SpecError(f"loc2d.crop {l2.crop} must lie inside loc2d.resize {l2.resize}")
        if any(n % 32 for n in l2.slice_shape):
            raise SpecError(f"loc2d slice shape {l2.slice_shape} must be a multiple of 32 (encoder stride)")
        if l2.in_slices < 1 or l2.in_slices % 2 == 0:
            raise SpecError(f"loc2d.in_slices must be odd and >= 1, got {l2.in_slices}")
        if len(l2.decoder_channels) != 5 or len(l2.encoder_layers) != 4 or len(l2.encoder_channels) != 4:
            raise SpecError("loc2d needs 4 encoder stages and 5 decoder stages")
        if l2.upsample not in ("bilinear", "nearest"):
            raise SpecError(f"loc2d.upsample must be bilinear or nearest, got {l2.upsample!r}")
        div = 2 ** (s3.levels - 1)
        if s3.levels < 2 or any(p % div for p in s3.patch):
            raise SpecError(f"seg3d.patch {s3.patch} must be a multiple of {div} for {s3.levels} levels")
        if s3.norm not in ("instance", "layer", "batch"):
            raise SpecError(f"seg3d.norm must be instance, layer or batch, got {s3.norm!r}")
        if not 0.0 < self.fusion.step_fraction <= 1.0:
            raise SpecError(f"fusion.step_fraction must be in (0, 1], got {self.fusion.step_fraction}")
        if self.fusion.rule not in ("paper", "components"):
            raise SpecError(f"fusion.rule must be paper or components, got {self.fusion.rule!r}")
        spacing = self.spacing_zyx_mm
        if (not isinstance(spacing, tuple) or len(spacing) != 3
                or not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in spacing)):
            raise SpecError(f"spacing_zyx_mm must be three finite positive millimetres (z, y, x), got {spacing!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Spec":
        """Build a spec from its dict form; unknown or missing keys are errors, not guesses."""
        if data.get("version") != SPEC_VERSION:
            raise SpecError(f"spec version {data.get('version')!r} is not supported (expected {SPEC_VERSION}); "
                            "re-export the weights with this version of l2s-engine")
        parts = {}
        for f in dataclasses.fields(cls):
            if f.name == "spacing_zyx_mm" and f.name not in data:
                raise MissingSpacingError(f"spec has no network spacing (spacing_zyx_mm): the weights predate it and "
                                          f"the runtime will not guess the grid the networks expect; {STAMP_SPACING}")
            if f.name not in data:
                raise SpecError(f"spec is missing {f.name!r}")
            value = data[f.name]
            sub = {"loc2d": Loc2DSpec, "seg3d": Seg3DSpec, "fusion": FusionSpec, "train": TrainSpec}.get(f.name)
            parts[f.name] = _sub_from_dict(sub, value, f.name) if sub else value
        if isinstance(parts["spacing_zyx_mm"], list):
            parts["spacing_zyx_mm"] = tuple(parts["spacing_zyx_mm"])
        extra = set(data) - {f.name for f in dataclasses.fields(cls)}
        if extra:
            raise SpecError(f"spec has unknown keys {sorted(extra)}")
        return cls(**parts).validate()


def _sub_from_dict(cls, value: dict[str, Any], name: str):
    names = {f.name for f in dataclasses.fields(cls)}
    if set(value) != names:
        raise SpecError(f"spec.{name}: missing {sorted(names - set(value))}, unknown {sorted(set(value) - names)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})


PRESETS: dict[str, Spec] = {
    # The paper's networks, patch and slice size (the 2D net has about 37 M parameters), at
    # autoPET's spacing (l2s-train replaces it by the median spacing of its training studies).
    "paper": Spec("paper"),
    # Same families, narrow and small enough that CPU training and the demo take minutes on
    # `small` phantoms (160 x 112 x 136 voxels).
    "lite": Spec(
        "lite",
        # The whole slice, head to feet: the authors' crop (10% of rows off each end) cut the
        # top of the brain off the small phantoms, and no cue reached lesions under its cortex.
        loc2d=Loc2DSpec(resize=(160, 128), crop=(0, 160, 0, 128), encoder_layers=(1, 1, 1, 1),
                        encoder_channels=(16, 32, 64, 128), stem_width=16,
                        decoder_channels=(64, 48, 32, 24, 16)),
        seg3d=Seg3DSpec(filters=8, patch=(64, 64, 64)),
        # Budget: the demo weights (wide phantoms, 2-core EPYC, bf16 autocast) in about 36 min:
        # 2D 50 x 80 batches of 160 x 128 slices (23 min), 3D 50 x 40 batches of two 64^3
        # patches (12 min).
        # lr 3e-3: on the standard phantoms 1e-2 (with momentum 0.99) collapsed the 3D net to an
        # all-background output after a few hundred batches (twice), 1e-3 learned too slowly
        # for minutes. Both losses weight lesion voxels (`lesion_pos_weight`): unweighted, the
        # 3D net on the wide phantoms collapsed the same way at 3e-3 (loss 0.68 at batch 560,
        # 0.95 at the end, every probability below 1e-3). 2D: the lesions are ~6 pixels of a
        # 128 x 128 slice; the held-out cue Dice (standard seed-1000 phantoms) was 0.36 after
        # 240 batches and 0.46 after 1,600; 4,000 batches took the training loss from 0.43 to 0.30.
        train=TrainSpec(epochs_2d=50, epochs_3d=50, batch_2d=16, batch_3d=2, iters_2d=80, iters_3d=40, lr=3e-3),
        spacing_zyx_mm=(6.1, 4.2, 4.2),  # the `small` phantoms' spacing (l2s-train: its studies' median)
    ),
}


def parse_spacing(text: str) -> tuple[float, float, float]:
    """'Z,Y,X' network spacing in mm (numpy order): three finite positive numbers.

    Raises:
        SpecError: anything else, with an example.
    """
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise SpecError(f"expected the spacing as Z,Y,X in mm (three positive numbers, numpy order z,y,x; "
                        f"autoPET: 3.0,2.0364,2.0364), got {text!r}")
    return values


def preset(name: str) -> Spec:
    """A preset spec by name."""
    if name not in PRESETS:
        raise SpecError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
    return PRESETS[name].validate()
