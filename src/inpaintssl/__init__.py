"""inpaintssl: inpainting-based self-supervised pretraining for medical image segmentation.

Implements Dominic et al., "Improving Data-Efficiency and Robustness of Medical Imaging
Segmentation Using Inpainting-Based Self-Supervised Learning", Bioengineering 2023: pretrain a
U-Net to restore corrupted slices (context prediction or context restoration), transfer its
weights, fine-tune on few labels, and measure what pretraining bought.

The training API is imported on first use, so ``import inpaintssl`` stays light and a component
module that fails to import cannot break the package itself.

Example:
    >>> import inpaintssl as issl
    >>> sorted(issl.registry.PRETEXT_TASKS.names())[:2]
    ['context_prediction', 'context_restoration']
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inpaintssl import registry
from inpaintssl._lazy import lazy_exports
from inpaintssl._version import __version__
from inpaintssl.config import FinetuneConfig, PretrainConfig

if TYPE_CHECKING:
    from inpaintssl.api import (
        EvaluationTable,
        FinetuneResult,
        PredictionError,
        PredictionReport,
        PretrainResult,
        TransferReport,
        evaluate,
        export_model,
        finetune,
        load_model,
        predict,
        pretrain,
        transfer,
    )

__all__ = [
    "EvaluationTable",
    "FinetuneConfig",
    "FinetuneResult",
    "PredictionError",
    "PredictionReport",
    "PretrainConfig",
    "PretrainResult",
    "TransferReport",
    "__version__",
    "evaluate",
    "export_model",
    "finetune",
    "load_model",
    "predict",
    "pretrain",
    "registry",
    "transfer",
]

# Everything in __all__ but these few is served, on first use, by inpaintssl.api.
_API_NAMES = frozenset(__all__) - {"FinetuneConfig", "PretrainConfig", "__version__", "registry"}


__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys(_API_NAMES, "api"), globals())
