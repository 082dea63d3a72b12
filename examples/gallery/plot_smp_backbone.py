"""
A segmentation_models_pytorch U-Net as the backbone
===================================================

Any network with ``encoder``, ``decoder`` and ``head`` parts can be pretrained by inpainting
(Dominic et al. 2023, sec. 2.3-2.5). The ``smp_unet`` backbone wraps
`segmentation_models_pytorch <https://github.com/qubvel-org/segmentation_models.pytorch>`_'s
``Unet`` with any of its encoders, or any timm encoder as ``"tu-<name>"``, randomly initialised:
nothing is downloaded. This example pretrains a ResNet-18 U-Net with context restoration on the
MNI152 template, transfers the encoder, fine-tunes it, and exports the pretrained encoder in smp's
own layout for use in any other smp model. It needs the ``smp`` extra
(``pip install "inpaintssl[smp]"``); MONAI's networks, ``monai_basic_unet`` and the residual-unit
``monai_unet`` (extra ``monai``), work the same way.
Budgets are a handful of steps, so the Dice shows the workflow, not the method's quality.
"""

# %%
# Pretraining
# -----------
# The backbone is chosen by name in the config like the built-in ``unet2d``. ResNet encoders
# halve the resolution five times, so the slices are cropped or padded to a multiple of 32
# (here 64 x 64, from the template at a quarter of its resolution).
import shutil
import tempfile
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from safetensors.torch import load_file

import inpaintssl as issl
from inpaintssl.inference import save_smp_encoder

workdir = Path(tempfile.mkdtemp(prefix="inpaintssl-gallery-"))
data = {"dataset": "mni152", "params": {"zoom": 0.25}, "image_size": [64, 64]}
model = {
    "backbone": "smp_unet",
    "params": {"encoder_name": "resnet18", "decoder_channels": [64, 32, 16, 16, 8]},
}
pre = issl.pretrain(
    {
        "data": data,
        "model": model,
        "pretext": {"task": "context_restoration", "patch_size": 4, "bank_size": 10},
        "optim": {"batch_size": 16, "max_epochs": 3, "steps_per_epoch": 8},
        "run": {"output_dir": str(workdir / "pre"), "quiet": True, "seed": 0},
    }
)
print(f"pretrained {type(pre.model).__name__} ({pre.model.encoder_name}) for {pre.epochs_run} epochs")

# %%
# Transfer and fine-tuning
# ------------------------
# ``weights: encoder`` copies the ResNet encoder; smp's decoder and segmentation head start fresh.
ft = issl.finetune(
    {
        "data": data,
        "model": model,
        "transfer": {"pretrained": str(pre.run_dir), "weights": "encoder"},
        "optim": {"batch_size": 16, "max_epochs": 4, "steps_per_epoch": 8},
        "run": {"output_dir": str(workdir / "ft"), "quiet": True, "seed": 0},
    }
)
print(ft.transfer.summary().splitlines()[0])
print("test Dice:", ", ".join(f"{name} {value:.3f}" for name, value in ft.mean_dice().items()))

# %%
# The pretrained encoder in smp's layout
# --------------------------------------
# ``save_smp_encoder`` writes the encoder's weights with smp's own key names, so any smp
# architecture built with the same encoder (``Unet``, ``UnetPlusPlus``, ``FPN``, ...) loads them
# with ``strict=True``; it accepts a model, a state dict, or a run folder as here.
path = save_smp_encoder(pre.run_dir, workdir / "resnet18_inpainting.safetensors")
fresh = smp.Unet("resnet18", encoder_weights=None, in_channels=1, classes=4)
fresh.encoder.load_state_dict(load_file(path), strict=True)

image = torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
pretrained = pre.model.cpu().eval().to(memory_format=torch.contiguous_format)
with torch.no_grad():
    ours, theirs = pretrained.encoder(image)[-1], fresh.eval().encoder(image)[-1]
print(f"{path.name}: deepest features of the two encoders differ by {(ours - theirs).abs().max():.1e}")

# %%
# The run folders were only for this page: remove them (each build of the docs runs it again).
shutil.rmtree(workdir, ignore_errors=True)
