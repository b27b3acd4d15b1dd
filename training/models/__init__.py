"""The two L2SNet networks, built from a spec."""

from .loc2d import Loc2DNet, load_imagenet_encoder
from .seg3d import Seg3DNet

__all__ = ["Loc2DNet", "Seg3DNet", "load_imagenet_encoder"]
