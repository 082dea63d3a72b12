"""Pin the public names of ``inpaintssl.corruption`` so a rename is a deliberate change."""

from __future__ import annotations

import inpaintssl.corruption as corruption

PUBLIC = {
    "ORIENTATIONS",
    "ContextPrediction",
    "ContextRestoration",
    "MaskBank",
    "PoissonDiscSampler",
    "PretextTask",
    "RandomSampler",
    "Sampler",
    "check_request",
    "launch_thread_pool",
    "orient_corners",
    "patch_union",
    "render_corruption_figure",
    "required_patch_count",
    "swap_permutation",
    "target_pixels",
    "validate_request",
}


def test_all_lists_exactly_the_public_names() -> None:
    assert set(corruption.__all__) == PUBLIC
    for name in PUBLIC - {"ORIENTATIONS"}:
        assert getattr(corruption, name).__module__.startswith("inpaintssl.corruption."), name
    assert corruption.ORIENTATIONS == 4


def test_every_public_callable_has_a_docstring() -> None:
    for name in PUBLIC - {"ORIENTATIONS"}:
        assert (getattr(corruption, name).__doc__ or "").strip(), name
