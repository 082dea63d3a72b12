"""
A pretext task of your own
==========================

The two pretext tasks of the paper are not the only inpainting-style corruptions worth trying.
A new task subclasses :class:`inpaintssl.corruption.PretextTask` and implements one method,
``apply``; the base class brings the samplers, the mask banks, seeding and fixed validation
corruption. This example writes *patch noise* (the patches are replaced by Gaussian noise with
the image's mean and standard deviation), registers it for this process and pretrains with it.
To ship a task as an installable plugin, see :doc:`/plugins`.
"""

# %%
# The task
# --------
# ``apply(images, *, bank, choice)`` corrupts image ``i`` of the ``(N, C, H, W)`` batch with mask
# bank entry ``choice[i]``. ``bank.masks_for(choice)`` gives the ``(N, H, W)`` masks of those
# entries on the images' device; one ``torch.where`` applies them to every channel at once. The
# noise comes from a generator seeded by the batch's bank entries, so the same entries always
# give the same noise and the base class's fixed validation corruption stays fixed.
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch

import inpaintssl as issl
from inpaintssl.corruption import MaskBank, PretextTask
from inpaintssl.registry import DATASETS, PRETEXT_TASKS


class PatchNoise(PretextTask):
    """Replace the patches with Gaussian noise matching each image channel's mean and std."""

    def apply(self, images: torch.Tensor, *, bank: MaskBank, choice: torch.Tensor) -> torch.Tensor:
        masks = bank.masks_for(choice)[:, None]  # (N, 1, H, W), broadcast over channels
        generator = torch.Generator().manual_seed(self.seed + int(choice.sum()))
        noise = torch.randn(images.shape, generator=generator).to(images)
        mean = images.mean(dim=(-2, -1), keepdim=True)
        std = images.std(dim=(-2, -1), keepdim=True)
        return torch.where(masks, mean + std * noise, images)


PRETEXT_TASKS.register("patch_noise")(PatchNoise)
print(PRETEXT_TASKS.names())

# %%
# What it does to an image
# ------------------------
# Built by name like any other task, with the same options (patch size, sampler, coverage, bank
# size, seed).
images = torch.stack([DATASETS.build("synthetic", split="val", size=(64, 64))[i]["image"] for i in range(3)])
task = PRETEXT_TASKS.build("patch_noise", patch_size=8, sampler="random", bank_size=4)
corrupted = task.corrupt_fixed(images, key=0)
print(f"changed pixels per image: {(corrupted != images).float().mean(dim=(1, 2, 3)).tolist()}")
fig, axes = plt.subplots(2, 3, figsize=(7, 4.8))
for i in range(3):
    axes[0, i].imshow(images[i, 0], cmap="gray")
    axes[1, i].imshow(corrupted[i, 0], cmap="gray")
    axes[0, i].set_axis_off()
    axes[1, i].set_axis_off()
axes[0, 0].set_title("original", loc="left")
axes[1, 0].set_title("patch noise, K = 8, random sampling", loc="left")
fig.tight_layout()

# %%
# Pretraining with it
# -------------------
# Once registered, the name works everywhere a pretext task is named: configs, the command line
# (in this process), studies. A short pretraining on the synthetic shapes:
workdir = Path(tempfile.mkdtemp(prefix="inpaintssl-gallery-"))
result = issl.pretrain(
    {
        "data": {"dataset": "synthetic", "params": {"num_images": 32, "num_val": 8, "size": [32, 32]}},
        "model": {"params": {"depth": 3, "base_width": 8}},
        "pretext": {"task": "patch_noise", "patch_size": 4, "bank_size": 8},
        "optim": {"max_epochs": 6},
        "run": {"output_dir": str(workdir / "patch-noise"), "quiet": True},
    }
)
for row in result.history:
    print(f"epoch {row['epoch']}: train L2 {row['train_loss']:8.1f}   validation L2 {row['val_loss']:8.1f}")

# %%
# ``val_inpainting.csv`` in the run folder holds the L2 norm of every inpainted validation image
# and of its corrupted input (the paper's Table 2 metric). An inpainter earns its keep once its
# norm falls below the corrupted input's; the two, after these few epochs:
table = result.evaluation
print(
    f"mean L2 norm: restored {table.column('l2_norm').mean():.2f}, "
    f"corrupted input {table.column('l2_norm_corrupted').mean():.2f}"
)

# %%
# The registration lasts for this process only; remove it so that later code sees the built-in
# names again.
PRETEXT_TASKS.unregister("patch_noise")

# %%
# The run folders were only for this page: remove them (each build of the docs runs it again).
shutil.rmtree(workdir, ignore_errors=True)
