"""inpaintssl: inpainting-based self-supervised pretraining for medical image segmentation.

Implements Dominic et al., "Improving Data-Efficiency and Robustness of Medical Imaging
Segmentation Using Inpainting-Based Self-Supervised Learning", Bioengineering 2023: pretrain a
U-Net to restore corrupted slices (context prediction or context restoration), transfer its
weights, fine-tune on few labels, and measure what pretraining bought.

The training API, the configs and the registry are imported on first use, so ``import inpaintssl``
stays light (no PyTorch or pydantic) and a component module that fails to import cannot break the
package itself.

Example:
    >>> import inpaintssl as issl
    >>> sorted(issl.registry.PRETEXT_TASKS.names())[:2]
    ['context_prediction', 'context_restoration']
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inpaintssl._lazy import lazy_exports
from inpaintssl._version import __version__

if TYPE_CHECKING:
    from inpaintssl import registry
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
    from inpaintssl.config import FinetuneConfig, PretrainConfig

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

# Everything in __all__ but these few is served, on first use, by inpaintssl.api (PyTorch).
_CONFIG_NAMES = frozenset({"FinetuneConfig", "PretrainConfig"})
_API_NAMES = frozenset(__all__) - _CONFIG_NAMES - {"__version__", "registry"}

# The configs and the registry are served on first use too: pydantic takes most of a second to
# import (the registry, with its plugin discovery, a tenth), and the console script imports this
# package before main() installs its Ctrl-C handler: a Ctrl-C in that time printed a traceback.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {**dict.fromkeys(_API_NAMES, "api"), **dict.fromkeys(_CONFIG_NAMES, "config"), "registry": "registry"},
    globals(),
)
