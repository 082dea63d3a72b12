"""Training: pretraining on the inpainting pretext task and fine-tuning for segmentation.

The package's modules are imported one by one (``inpaintssl.training.pretraining``,
``inpaintssl.training.finetuning``, ...); this file imports none of them, so importing one
submodule does not load the rest. The public entry points are :func:`inpaintssl.pretrain` and
:func:`inpaintssl.finetune`; components are built from config values in
:mod:`inpaintssl.training.components`.

Example:
    >>> from inpaintssl.config import PretextConfig
    >>> from inpaintssl.training.components import build_pretext_task
    >>> build_pretext_task(PretextConfig(bank_size=2), seed=0).sampler_name
    'poisson_disc'
"""
