"""The ``run`` section: where a run writes, its seed, and how it uses the hardware.

Example:
    >>> RunConfig(output_dir="runs/a", device="cuda:1").device
    'cuda:1'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from inpaintssl.config.base import Device, _given, _Strict, user_path
from inpaintssl.config.unused import UnusedSetting

__all__ = ["CompileMode", "RunConfig"]

CompileMode = Literal["off", "default", "reduce-overhead", "max-autotune"]


class RunConfig(_Strict):
    """Where and how a run executes.

    Attributes:
        output_dir: Run folder (config, manifest, metrics CSV, checkpoints).
        seed: Seed of weights, data order, corruption and workers, in ``[0, 2**32)``: every
            random generator involved is seeded from it, DataLoader workers from
            :func:`~inpaintssl.training.epoch_loader.base_worker_seed` plus their index, moved on
            each epoch (the manifest's ``worker_seeds``).
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
        amp: Mixed precision on CUDA: ``auto`` (bf16 where supported, else fp16), ``bf16``,
            ``fp16`` or ``off``. Ignored on CPU.
        channels_last: Memory format: ``auto`` (``channels_last`` on the CPU, where oneDNN's
            forward convolutions gain from it; contiguous on CUDA, where GroupNorm has no
            channels-last kernel and copies every activation), ``true`` or ``false``.
        deterministic: Seed everything and use deterministic algorithms (bit-identical CPU runs).
        reuse_host_memory: On the CPU, make glibc keep freed large blocks for reuse instead of
            unmapping them, so a step does not page-fault its activations back in (1.25-1.33x
            faster steps on the project machine, at 19-29% more peak memory: off by default).
            Process-wide; Linux/glibc only. See :mod:`inpaintssl.training.host_memory`.
        cpu_weight_gradient: How channels_last CPU training computes the U-Net's 3x3 weight
            gradients: ``auto`` (per layer, whichever measured faster for its shape),
            ``blocked_gemm`` (blocked im2col GEMMs everywhere, 2x faster than oneDNN's NHWC
            kernel at 256x256 on the project's AVX2 processor) or ``onednn`` (PyTorch's own
            everywhere). See :mod:`inpaintssl.models.cpu_convolution`. Under ``compile`` the
            compiler generates the backward pass itself and this setting does not apply.
        compile: ``torch.compile`` the network for the training steps and validation: ``off``
            (the default; eager PyTorch, bit-identical CPU runs), ``default``, ``reduce-overhead`` (also
            replays each step as a CUDA graph, which saves the launch cost of the many small
            kernels of a narrow U-Net) or ``max-autotune`` (also searches kernel configurations;
            slow to compile). The compiler fuses each GroupNorm with its ReLU and the weight
            standardisation into the surrounding kernels in either memory format, so on CUDA
            it is what makes ``channels_last`` pay. Results agree with eager training to
            floating-point rounding, not bit for bit; compiling costs tens of seconds to minutes
            at the first step and after a change of batch shape. Validation is compiled too (a second
            graph, without autograd). See
            :mod:`inpaintssl.training.step` and ``benchmarks/README.md``.
        cudnn_benchmark: On CUDA, let cuDNN time its convolution algorithms for every new input
            shape and keep the fastest (``torch.backends.cudnn.benchmark``): faster steps when
            every batch has one shape, but the algorithms, and so the last bits of the results,
            may differ from run to run. Cannot be combined with ``deterministic``. No effect on
            the CPU.
        resume: Continue from the run folder's last checkpoint.
        quiet: No progress bars; log lines only.
        checkpoint_every: Save the ``last`` checkpoint every this many epochs.
    """

    output_dir: Path = Path("runs/run")
    seed: int = Field(default=0, ge=0, lt=2**32)
    device: Device = "auto"
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    channels_last: Literal["auto"] | bool = "auto"
    deterministic: bool = False
    reuse_host_memory: bool = False
    cpu_weight_gradient: Literal["auto", "blocked_gemm", "onednn"] = "auto"
    compile: CompileMode = "off"
    cudnn_benchmark: bool = False
    resume: bool = False
    quiet: bool = False
    checkpoint_every: int = Field(default=1, gt=0)

    @field_validator("output_dir", mode="before")
    @classmethod
    def _home(cls, value: Any) -> Any:
        # "~" and "$SCRATCH" reach a config from YAML and job scripts unexpanded; "" would be here.
        return user_path(value, field="output_dir")

    @model_validator(mode="after")
    def _reproducible_or_autotuned(self) -> RunConfig:
        if self.deterministic and self.cudnn_benchmark:
            raise ValueError(
                "run.deterministic=true and run.cudnn_benchmark=true contradict each other: cuDNN's "
                "autotuning picks algorithms by timing, so results may differ from run to run; "
                "set one of them to false"
            )
        return self

    def _unused_settings(self) -> list[UnusedSetting]:
        unused: list[UnusedSetting] = []
        if self.device == "cpu":  # "auto" may pick CUDA: only a CPU asked for by name is certain
            if self.amp in ("bf16", "fp16") and _given(self, "amp"):
                why = "run.device='cpu', and mixed precision is used on CUDA only"
                unused.append(UnusedSetting("run.amp", self.amp, why))
            if _given(self, "cudnn_benchmark"):
                why = "run.device='cpu', and cuDNN's autotuning applies to CUDA only"
                unused.append(UnusedSetting("run.cudnn_benchmark", self.cudnn_benchmark, why))
        if _given(self, "cpu_weight_gradient"):
            # models.cpu_convolution applies it only to channels_last CPU tensors, and only to the
            # backward pass eager autograd runs (the compiler writes its own).
            reason: str | None = None
            if self.device.startswith("cuda"):
                reason = f"run.device={self.device!r}, and it chooses a kernel for CPU training only"
            elif self.channels_last is False:
                reason = "run.channels_last=false, and it chooses a kernel for channels_last training only"
            elif self.compile != "off":
                reason = f"run.compile={self.compile!r}, and the compiler generates the backward pass itself"
            if reason is not None:
                unused.append(UnusedSetting("run.cpu_weight_gradient", self.cpu_weight_gradient, reason))
        return unused
