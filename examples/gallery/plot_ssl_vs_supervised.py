"""
The whole method in a minute: pretrain, transfer, fine-tune
===========================================================

Self-supervised pretraining by inpainting, then fine-tuning on few labels, compared with the same
U-Net trained on the same labels from scratch (Dominic et al. 2023, sec. 2.3-2.5). Everything is
shrunk to run in about a minute on a laptop CPU: the MNI152 template at a quarter of its
resolution (about 4 mm voxels), a 3-level U-Net of width 8, and a few hundred training steps.
At this scale the comparison says little about the method; it shows the workflow and its
outputs. ``inpaintssl demo`` runs the full comparison.
"""

# %%
# Data
# ----
# ``zoom: 0.25`` resamples the template to a quarter of its resolution; ``image_size`` crops or
# pads every slice to 56 x 48, a multiple of ``2**(depth - 1) = 4``. Pretraining uses the axial
# training slices plus the coronal and sagittal slices (``data.unlabelled``); fine-tuning uses a
# quarter of the labelled axial training slices, and everything is scored on the axial test
# slices, which no run trains on. The coronal and sagittal slices cross every one of them,
# though: the SSL arm has seen the test anatomy unlabelled and the supervised arm has not, so this
# is not a held-out comparison (``inpaintssl demo`` pretrains on the training slices alone).
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch

import inpaintssl as issl
from inpaintssl.config import DataConfig
from inpaintssl.data import build_datasets
from inpaintssl.registry import PRETEXT_TASKS
from inpaintssl.stats import wilcoxon_greater

params = {"zoom": 0.25}
data = {"dataset": "mni152", "params": params, "image_size": [56, 48]}
model = {"params": {"depth": 3, "base_width": 8}}
workdir = Path(tempfile.mkdtemp(prefix="inpaintssl-gallery-"))  # run folders go here

labelled = build_datasets(DataConfig(**data, label_fraction=0.25), stage="finetune", seed=0)
print(f"fine-tuning on {len(labelled.train)} labelled slices, testing on {len(labelled.test)}")

# %%
# Pretraining
# -----------
# The paper's optimal pretext task: context restoration with Poisson-disc patches (sec. 3.3).
# Its 32x32 patches on 512x512 slices span 1/16 of the side; on 48 pixels that is 3, rounded up
# to 4 here. The loss is the paper's L2 (eq. A1); the optimiser follows the library's default
# recipe (``optim.recipe: budget``: Adam with a warm-up and cosine decay over the 60-step budget),
# with short epochs of 10 steps.
pretext = {"task": "context_restoration", "patch_size": 4, "bank_size": 10}
pre = issl.pretrain(
    {
        "data": {**data, "unlabelled": [{"dataset": "mni152", "params": params}]},
        "model": model,
        "pretext": pretext,
        "optim": {"batch_size": 16, "max_epochs": 6, "steps_per_epoch": 10},
        "run": {"output_dir": str(workdir / "pre"), "quiet": True},
    }
)
print(f"pretraining: {pre.epochs_run} epochs, best validation L2 loss {pre.best_val_loss:.0f}")

# %%
# .. note::
#
#    **The ConvergenceWarning above is deliberate.** Sixty pretraining steps, and sixty
#    fine-tuning steps per arm below, keep this page to about a minute. Every run judges its own
#    validation-loss curve and, when the curve was still falling as the budget ran out, warns that
#    it has not converged and names the settings to raise
#    (:class:`~inpaintssl.training.convergence.ConvergenceWarning`, :doc:`/training`). Here it is
#    right, as are the two after the fine-tuning runs below: these models are far from trained.
#    The budget that converges on this data is the README's and the demo's: the template at its
#    default zoom, fitted to 112x96, a depth-4, width-16 U-Net, 400 pretraining steps (40 epochs
#    of 10) and 200 fine-tuning steps (20 epochs of 10). ``inpaintssl demo`` trains that way: on
#    2026-12-03, 12 of its 13 runs converged in 396 s on a 2-core CPU, with the SSL arm ahead by
#    +0.15 to +0.20 mean Dice at 5 % of the labels and no better with all of them (README, "The
#    demo").

# %%
# How well does it restore a held-out slice after these few steps?
task = PRETEXT_TASKS.build(pretext["task"], patch_size=pretext["patch_size"], bank_size=10)
clean = labelled.test[len(labelled.test) // 2]["image"][None]
corrupted = task.corrupt_fixed(clean, key=0)
with torch.no_grad():
    restored = pre.model.cpu().eval()(corrupted)
fig, axes = plt.subplots(1, 3, figsize=(7.5, 3.2))
for ax, (title, shown) in zip(axes, [("corrupted", corrupted), ("restored", restored), ("original", clean)]):
    ax.imshow(shown[0, 0], cmap="gray", vmin=float(clean.min()), vmax=float(clean.max()))
    ax.set_title(title)
    ax.set_axis_off()
fig.tight_layout()

# %%
# Fine-tuning, with and without the pretrained encoder
# ----------------------------------------------------
# The SSL model gets the pretrained encoder ("FEF": encoder transferred, fine-tuned immediately,
# the paper's best transfer design, Appendix B); the baseline starts from scratch. Both see the
# same labelled slices in the same order with the same seed.
results = {}
for arm, pretrained in (("SSL", str(pre.run_dir)), ("supervised", None)):
    results[arm] = issl.finetune(
        {
            "data": {**data, "label_fraction": 0.25},
            "model": model,
            "transfer": {"pretrained": pretrained, "weights": "encoder", "schedule": "immediate"},
            "optim": {"max_epochs": 12, "steps_per_epoch": 5},
            "run": {"output_dir": str(workdir / arm.lower()), "quiet": True},
        }
    )
    dice = ", ".join(f"{name} {value:.3f}" for name, value in results[arm].mean_dice().items())
    print(f"{arm:10s} test Dice: {dice}")

fig, ax = plt.subplots(figsize=(5, 3.2))
for arm, result in results.items():
    ax.plot([row["epoch"] for row in result.history], [row["val_loss"] for row in result.history], label=arm)
ax.set_xlabel("epoch")
ax.set_ylabel("validation loss (Dice + cross-entropy)")  # the budget recipe's dice_ce
ax.legend()
fig.tight_layout()

# %%
# Per-slice comparison
# --------------------
# The paper compares per-image Dice with a one-sided paired Wilcoxon signed-rank test (sec. 2.8).
# With a handful of test slices from one brain the test has almost no power and the slices are
# not independent, so read the p-value as an illustration of the API, not as evidence.
ssl_dice = results["SSL"].test.select(level="image").column("dice_mean")
sup_dice = results["supervised"].test.select(level="image").column("dice_mean")
p_value = wilcoxon_greater(ssl_dice, sup_dice)
print(f"mean Dice, {len(ssl_dice)} test slices: SSL {ssl_dice.mean():.3f}, supervised {sup_dice.mean():.3f}")
print(f"one-sided Wilcoxon p-value (SSL > supervised): {p_value:.3f}")

# %%
# Segmentations of the same held-out slice, with the labels as colours (CSF, GM, WM).
item = labelled.test[len(labelled.test) // 2]


def colour(onehot: torch.Tensor) -> torch.Tensor:
    """(K, H, W) one-hot -> (H, W) label map 0..K."""
    return (onehot * torch.arange(1, onehot.shape[0] + 1)[:, None, None]).amax(dim=0)


fig, axes = plt.subplots(1, 3, figsize=(7.5, 3.2))
panels = [("reference", colour(item["label"]))]
for arm, result in results.items():
    with torch.no_grad():
        logits = result.model.cpu().eval()(item["image"][None])
    panels.append((arm, colour((logits[0] > 0).float())))
for ax, (title, labels) in zip(axes, panels):
    ax.imshow(labels, cmap="viridis", vmin=0, vmax=3, interpolation="nearest")
    ax.set_title(title)
    ax.set_axis_off()
fig.tight_layout()

# %%
# The run folders were only for this page: remove them (each build of the docs runs it again).
shutil.rmtree(workdir, ignore_errors=True)
