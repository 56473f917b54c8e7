"""HyperInverter (Dinh et al., CVPR 2022): two-phase inversion into StyleGAN2.

Phase I:  w = E1(x) + w_avg, repeated over all ws; Phase-I image G(w; theta).
Phase II: E2 reads the photo and the (resized) Phase-I image; the
hypernetwork turns the two feature stacks into residuals delta_theta for a set
of generator weights; final image G(w; theta + delta_theta).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hyperinverter_gui.networks.encoders import LayerWiseEncoder, WEncoder
from hyperinverter_gui.networks.hypernetwork import Hypernetwork, TargetLayer
from hyperinverter_gui.networks.stylegan2 import Generator

ENCODER_RESOLUTION = 256


@dataclass
class HyperInverterConfig:
    """Architecture of a HyperInverter checkpoint, derived from its keys and shapes."""

    backbone: str  # "ir_se" (faces) or "resnet34" (other domains) for E1 and E2.
    w_encoder_backbone: str
    n_styles: int  # Number of E2 feature maps.
    hidden_dim: int  # D of the hypernetwork.
    targets: list[TargetLayer]  # Predicted generator weights.


def resize_for_encoder(x: torch.Tensor) -> torch.Tensor:
    """Bilinear resize to 256 px exactly as the official forward (align_corners=False, no antialias)."""
    return F.interpolate(x, size=(ENCODER_RESOLUTION, ENCODER_RESOLUTION), mode="bilinear", align_corners=False)


class HyperInverter(nn.Module):
    """Generator + E1 (``w_encoder``) + E2 (``w_bar_encoder``) + ``hypernet``."""

    def __init__(self, generator: Generator, cfg: HyperInverterConfig):
        super().__init__()
        self.cfg = cfg
        self.generator = generator
        self.w_encoder = WEncoder(cfg.w_encoder_backbone)
        self.w_bar_encoder = LayerWiseEncoder(cfg.n_styles, cfg.backbone)
        self.hypernet = Hypernetwork(cfg.targets, cfg.hidden_dim)

    @property
    def num_ws(self) -> int:
        return self.generator.num_ws

    def encode_w(self, x256: torch.Tensor) -> torch.Tensor:
        """Phase I code: [N,3,256,256] -> ws [N, num_ws, w_dim]."""
        w = self.w_encoder(x256) + self.generator.w_avg.unsqueeze(0)
        return w.unsqueeze(1).repeat(1, self.num_ws, 1)

    def predict_deltas(self, x256: torch.Tensor, phase1: torch.Tensor) -> dict[str, torch.Tensor]:
        """Phase II weight residuals {synthesis parameter name: [N, *shape]}."""
        photo_features = self.w_bar_encoder(x256)
        image_features = self.w_bar_encoder(resize_for_encoder(phase1))
        return self.hypernet(image_features, photo_features)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """x [N,3,H,W] in [-1,1] -> (ws, phase1 image, final image, deltas)."""
        x256 = resize_for_encoder(x)
        ws = self.encode_w(x256)
        phase1 = self.generator.synthesis(ws)
        deltas = self.predict_deltas(x256, phase1)
        final = self.generator.synthesis(ws, deltas)
        return ws, phase1, final, deltas
