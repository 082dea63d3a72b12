"""
Corrupting an MRI slice: the two pretext tasks
==============================================

Inpainting-based pretraining corrupts a quarter of every image and trains the network to undo it
(Dominic et al. 2023, sec. 2.4, Figure 1). *Context prediction* fills ``K x K`` patches with the
image's mean; *context restoration* swaps pairs of patches. This example applies both, at three
patch sizes, to an axial slice of the MNI152 brain template that ships with ``nilearn``.
"""

# %%
# A real slice
# ------------
# The ``mni152`` dataset slices the ICBM152 2009a T1 template, z-scored over the whole volume, and
# labels CSF, grey and white matter. We take a mid-brain slice from its held-out test split.
import matplotlib.pyplot as plt
import torch

from inpaintssl.registry import DATASETS, PRETEXT_TASKS

test = DATASETS.build("mni152", split="test")
item = test[len(test) // 2]
image = item["image"][None]  # (1, 1, H, W): a batch of one single-channel image
print(f"{item['volume_id']}: image {tuple(item['image'].shape)}, classes {test.class_names}")

# %%
# Both tasks at three patch sizes
# -------------------------------
# ``corrupt_fixed`` gives the reproducible corruption used for validation: the same key gives the
# same output on every call and every device. Poisson-disc sampling (the default) keeps patches
# apart, so the corrupted area is exactly the patches' union, at least 1/4 of the slice.
patch_sizes = (32, 16, 8)
tasks = ("context_prediction", "context_restoration")
fig, axes = plt.subplots(len(tasks), len(patch_sizes) + 1, figsize=(9, 5.4))
for row, name in enumerate(tasks):
    axes[row, 0].imshow(image[0, 0], cmap="gray")
    axes[row, 0].set_title("original" if row == 0 else "")
    axes[row, 0].set_ylabel(name.replace("_", " "))
    for col, k in enumerate(patch_sizes, start=1):
        task = PRETEXT_TASKS.build(name, patch_size=k, bank_size=1)
        corrupted = task.corrupt_fixed(image, key=0)
        in_patches = task.bank(shape=tuple(image.shape[-2:])).masks_for(torch.tensor([0]))
        changed = (corrupted != image)[0, 0]
        axes[row, col].imshow(corrupted[0, 0], cmap="gray")
        axes[row, col].set_title(f"K = {k}")
        print(
            f"{name:20s} K={k:2d}: patches cover {in_patches.float().mean():.3f} of the slice, "
            f"values changed on {changed.float().mean():.3f}"
        )
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()

# %%
# Patches that land on the background change nothing when swapped (background pixels are all
# equal), and a patch filled with the mean changes every pixel it covers: that is the gap between
# the two printed columns. It is one reason to crop slices to the anatomy before pretraining.
#
# What restoration keeps
# ----------------------
# Swapping moves pixels but never invents them: every channel of the output is a permutation of
# the input's pixels, so the intensity histogram is unchanged and the network cannot detect the
# corruption from intensities alone.
restoration = PRETEXT_TASKS.build("context_restoration", patch_size=16, bank_size=1)
swapped = restoration.corrupt_fixed(image, key=0)
same_values = torch.equal(swapped.flatten().sort().values, image.flatten().sort().values)
print(f"restoration output is a permutation of the input: {same_values}")
