"""facer's FaRL face parser (`farl/celebm/448`) behind the common `FaceParser` interface.

The weights come as TorchScript, `face_parsing.farl.celebm.main_ema_181500_jit.pt`
(FacePerceiver/facer releases, models-v1). Call contract, from facer `face_parsing/farl.py` and
FaRL `experiments/face_parsing/network.py`: input (B, 3, 448, 448) float RGB in [0, 1] (the
script normalises internally); output a tuple `(logits, aux)` where logits are
(B, 19, h, w) in facer's celebm class order (FaRL's config upsamples them to 512 x 512) and aux
is an empty dict. The logits cover the 448 template whatever their resolution.

Instead of facer's RetinaFace + landmark alignment we use the fixed FFHQ alignment of
`alignment.py` (see there why it is equivalent for FFHQ-aligned faces). The official MM2Latent
scripts (face_parsing/face_rgb2greyseg.py) ran facer with detection and stored labels in facer
order x 10; this project stores CelebAMask-HQ order instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mm2latent.batching import per_sample
from mm2latent_core.errors import CheckpointError
from mm2latent.models.face_parser.alignment import (FfhqAlignCfg, ffhq_template_matrix,
                                                    warp_from_template, warp_to_template)
from mm2latent.models.face_parser.base import FaceParser
from mm2latent.models.face_parser.labels import FACER_CELEBM_CLASSES, FACER_CELEBM_TO_CELEBAMASK_LUT
from storage.torch_files import load_torchscript


@dataclass(frozen=True)
class FacerFarlCfg:
    """facer `farl/celebm/448` parser with a fixed FFHQ alignment."""

    align: FfhqAlignCfg = field(default_factory=FfhqAlignCfg)  # template 448 px, FFHQ crop = image
    n_classes: int = len(FACER_CELEBM_CLASSES)  # logits channels the script must return (19)


class FacerFarlParser(FaceParser):
    """Wraps a facer celebm TorchScript module: warp to the template, run, warp logits back."""

    def __init__(self, cfg: FacerFarlCfg, net: nn.Module, source: str = "<in memory>") -> None:
        super().__init__(FACER_CELEBM_TO_CELEBAMASK_LUT)
        self.cfg = cfg
        self.net = net
        self.source = source  # the weights file, named in errors about the script's output
        self.init_weights()

    def init_weights(self) -> None:
        """Nothing to initialise: every weight comes from the TorchScript file."""

    def _logits_of(self, output: object, batch: int) -> torch.Tensor:
        logits = output[0] if isinstance(output, (tuple, list)) else output
        ok = (isinstance(logits, torch.Tensor) and logits.ndim == 4 and logits.shape[0] == batch
              and logits.shape[1] == self.cfg.n_classes)
        if not ok:
            is_tensor = isinstance(logits, torch.Tensor)
            shape = tuple(logits.shape) if is_tensor else type(logits).__name__
            raise CheckpointError(self.source, f"the script returned {shape}; expected logits "
                                  f"(B={batch}, {self.cfg.n_classes}, h, w) as its first output.",
                                  "Is this facer's farl/celebm/448 TorchScript file?")
        return logits.float()

    def source_logits(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 19, H, W) logits in facer celebm order for RGB [0, 1] images of any square size."""
        h, w = images.shape[2:]
        size = self.cfg.align.template_size
        matrix = ffhq_template_matrix(h, w, self.cfg.align)
        warped = warp_to_template(images.float(), matrix, size)  # (B, 3, T, T)
        # One image per call: the script runs in C++, out of reach of batching.batch_invariant,
        # and a fixed shape keeps each image's logits independent of its batch.
        logits = per_sample(lambda one: self._logits_of(self.net(one), 1), warped)  # (B, 19, h', w')
        return warp_from_template(logits, matrix, size, (h, w))  # (B, 19, H, W)


def load_facer_farl(path: object, cfg: FacerFarlCfg | None = None) -> FacerFarlParser:
    """A parser in eval mode around facer's celebm TorchScript file, loaded on the CPU.

    Args:
        path: `face_parsing.farl.celebm.main_ema_181500_jit.pt` (or a file-like object).
        cfg: alignment and class count; None = the official setup.
    """
    try:
        net = load_torchscript(path)
    except FileNotFoundError as e:
        raise CheckpointError(path, "file not found.") from e
    except (RuntimeError, ValueError, OSError) as e:
        raise CheckpointError(path, f"not a TorchScript archive ({type(e).__name__}: {e}).",
                              "Pass facer's face_parsing.farl.celebm.main_ema_181500_jit.pt; "
                              "re-download it if it is truncated.") from e
    return FacerFarlParser(cfg or FacerFarlCfg(), net.eval(), source=str(path)).eval()
