"""inpaintssl: inpainting-based self-supervised pretraining for medical image segmentation.

Implements Dominic et al., "Improving Data-Efficiency and Robustness of Medical Imaging
Segmentation Using Inpainting-Based Self-Supervised Learning", Bioengineering 2023: pretrain a
U-Net to restore corrupted slices (context prediction or context restoration), transfer its
weights, fine-tune on few labels, and measure what pretraining bought.

Example:
    >>> import inpaintssl as issl
    >>> sorted(issl.registry.PRETEXT_TASKS.names())[:2]
    ['context_prediction', 'context_restoration']
"""

from inpaintssl import registry
from inpaintssl._version import __version__
from inpaintssl.api import (
    FinetuneResult,
    PretrainResult,
    TransferReport,
    evaluate,
    finetune,
    pretrain,
    transfer,
)
from inpaintssl.config import FinetuneConfig, PretrainConfig

__all__ = [
    "FinetuneConfig",
    "FinetuneResult",
    "PretrainConfig",
    "PretrainResult",
    "TransferReport",
    "__version__",
    "evaluate",
    "finetune",
    "pretrain",
    "registry",
    "transfer",
]
