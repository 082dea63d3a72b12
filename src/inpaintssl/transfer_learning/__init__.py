"""Transfer learning: which pretrained weights move, and how they are then fine-tuned (sec. 2.5.1).

Importing this package registers the ``"encoder"`` and ``"encoder_decoder"`` strategies in
:data:`inpaintssl.registry.TRANSFER_STRATEGIES`.

Example:
    >>> from inpaintssl.registry import BACKBONES
    >>> from inpaintssl.transfer_learning import transfer
    >>> pre = BACKBONES.build("unet2d", in_channels=1, out_channels=1, depth=2, base_width=4, seed=0)
    >>> seg = BACKBONES.build("unet2d", in_channels=1, out_channels=2, depth=2, base_width=4, seed=1)
    >>> len(transfer(pre, seg).copied) > 0
    True
"""

from inpaintssl.transfer_learning.channels import AdaptMode, adapt_input_channels
from inpaintssl.transfer_learning.report import TransferReport
from inpaintssl.transfer_learning.schedules import (
    FINETUNE_SCHEDULES,
    SCHEDULE_DESCRIPTIONS,
    FinetunePhase,
    finetune_phases,
    hold_running_statistics,
    set_trainable,
    trainable_parameters,
)
from inpaintssl.transfer_learning.strategies import EncoderDecoderTransfer, EncoderTransfer, TransferStrategy
from inpaintssl.transfer_learning.transfer import (
    InChannelsMode,
    PretrainedSource,
    strip_wrapper_prefixes,
    transfer,
)

__all__ = [
    "FINETUNE_SCHEDULES",
    "SCHEDULE_DESCRIPTIONS",
    "AdaptMode",
    "EncoderDecoderTransfer",
    "EncoderTransfer",
    "FinetunePhase",
    "InChannelsMode",
    "PretrainedSource",
    "TransferReport",
    "TransferStrategy",
    "adapt_input_channels",
    "finetune_phases",
    "hold_running_statistics",
    "set_trainable",
    "strip_wrapper_prefixes",
    "trainable_parameters",
    "transfer",
]
