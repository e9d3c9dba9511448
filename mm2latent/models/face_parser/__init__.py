"""Face parsers that return 19-class label maps in CelebAMask-HQ order.

`load_bisenet` (face-parsing.PyTorch `79999_iter.pth`) and `load_facer_farl` (facer
`farl/celebm/448` TorchScript) both give a `FaceParser`: `parse(images)` takes float RGB
(B, 3, H, W) in [0, 1] and returns a `ParseResult` with (B, H, W) uint8 labels and the
per-image non-background fraction (`face_found()` marks images where no face was parsed).
"""

from mm2latent.models.face_parser.base import MIN_FACE_FRACTION, FaceParser, ParseResult
from mm2latent.models.face_parser.bisenet import BiSeNet, BiSeNetCfg, load_bisenet
from mm2latent.models.face_parser.facer_farl import FacerFarlCfg, FacerFarlParser, load_facer_farl
from mm2latent.models.face_parser.labels import CELEBAMASK_HQ_CLASSES, PALETTE, colorize

__all__ = [
    "CELEBAMASK_HQ_CLASSES", "MIN_FACE_FRACTION", "PALETTE", "BiSeNet", "BiSeNetCfg", "FaceParser",
    "FacerFarlCfg", "FacerFarlParser", "ParseResult", "colorize",
    "load_bisenet", "load_facer_farl",
]
