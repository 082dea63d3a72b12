"""An example inpaintssl plugin: local pixel shuffling as an inpainting pretext task.

Installing this distribution registers :class:`LocalPixelShuffle` under the name
``local_pixel_shuffle`` through the entry-point group ``inpaintssl.pretext_tasks`` (see this
package's ``pyproject.toml``); inpaintssl imports this module only when that name is asked for.

Example:
    >>> from inpaintssl.corruption import PretextTask
    >>> issubclass(LocalPixelShuffle, PretextTask)
    True
"""

from inpaintssl_pixel_shuffle.shuffle import LocalPixelShuffle, local_shuffle_permutation, patch_cells

__all__ = ["LocalPixelShuffle", "local_shuffle_permutation", "patch_cells"]
__version__ = "0.1.0"
