"""Using a trained model: load it, predict label maps on new scans, export it to other runtimes.

- :func:`load_model`: the network of a run or checkpoint with its metadata, never unpickled.
- :func:`predict`: label maps (and class volumes) on the input scans' own voxel grids, with
  checks of each scan against the training data (voxel spacing, anatomy cut by the crop) and,
  for runs trained on crops, sliding windows over whole slices (:mod:`inpaintssl.inference.tiling`).
- :func:`export_model`: ONNX, TorchScript, or a plain safetensors state dict with weight
  standardisation folded into ordinary convolutions.
- :func:`smp_encoder_state_dict`, :func:`basic_unet_state_dict`, :func:`monai_unet_state_dict`:
  weights in the key layouts of
  segmentation_models_pytorch and MONAI, for the backbones of :mod:`inpaintssl.models.external`.

Example:
    >>> from inpaintssl.inference import fold_weight_standardisation, plain_unet
    >>> callable(fold_weight_standardisation) and callable(plain_unet)
    True
"""

from inpaintssl.inference.export import (
    ExportError,
    export_model,
    fold_weight_standardisation,
    plain_unet,
)
from inpaintssl.inference.external_weights import (
    basic_unet_state_dict,
    monai_unet_state_dict,
    save_smp_encoder,
    smp_encoder_state_dict,
)
from inpaintssl.inference.loading import LoadedModel, ModelInfo, Preprocessing, load_model
from inpaintssl.inference.predict import (
    CUT_EDGE_WARN_SHARE,
    CasePrediction,
    PredictionError,
    PredictionReport,
    SkippedInput,
    predict,
)

__all__ = [
    "CUT_EDGE_WARN_SHARE",
    "CasePrediction",
    "ExportError",
    "LoadedModel",
    "ModelInfo",
    "PredictionError",
    "PredictionReport",
    "Preprocessing",
    "SkippedInput",
    "basic_unet_state_dict",
    "export_model",
    "fold_weight_standardisation",
    "load_model",
    "monai_unet_state_dict",
    "plain_unet",
    "predict",
    "save_smp_encoder",
    "smp_encoder_state_dict",
]
