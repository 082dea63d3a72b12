"""Axis codes of affines and reorientation of volumes, checked against nibabel's orientation functions.

Every one of the 48 axis codes (3! axis orders x 8 sign choices) and every source/target pair is
compared with ``nibabel.orientations`` (``aff2axcodes``, ``axcodes2ornt``, ``ornt_transform``,
``apply_orientation``, ``inv_ornt_aff``) and ``Nifti1Image.as_reoriented``; oblique, sheared and
scaled affines are drawn with hypothesis; a few small cases are worked out by hand.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
import re
from itertools import permutations, product

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nibabel.affines import voxel_sizes
from nibabel.orientations import aff2axcodes, apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform

from inpaintssl.data import orientation
from inpaintssl.data.orientation import Reorientation, axis_codes, check_axis_codes

ALL_CODES = [
    "".join(letters)
    for order in permutations((("R", "L"), ("A", "P"), ("S", "I")))
    for letters in product(*order)
]

SHAPE = (2, 3, 4)  # distinct sizes: a mixed-up axis cannot go unnoticed
SPACING = (0.5, 1.25, 3.0)


def _ornt(source: str, target: str) -> np.ndarray:
    return ornt_transform(axcodes2ornt(tuple(source)), axcodes2ornt(tuple(target)))


def _code_matrix(codes: str) -> np.ndarray:
    """The 3x3 signed permutation whose column i points along world axis ``codes[i]``."""
    matrix = np.zeros((3, 3))
    for i, (axis, sign) in enumerate(axcodes2ornt(tuple(codes))):
        matrix[int(axis), i] = sign
    return matrix


def _affine(matrix: np.ndarray, origin: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = matrix
    affine[:3, 3] = origin
    return affine


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues' rotation by ``angle`` radians about ``axis``."""
    x, y, z = axis / np.linalg.norm(axis)
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * (k @ k)


def test_all_codes_are_the_48_distinct_orientations() -> None:
    assert len(set(ALL_CODES)) == 48
    assert {"RAS", "LPS", "LAS", "SAR", "PSR", "IPL"} <= set(ALL_CODES)


# ---------------------------------------------------------------------------------------------- codes


@pytest.mark.parametrize("codes", ALL_CODES)
def test_every_valid_code_is_accepted_in_any_case(codes: str) -> None:
    assert check_axis_codes(codes, where="orientation") == codes
    assert check_axis_codes(codes.lower(), where="orientation") == codes
    mixed = codes[0].lower() + codes[1:]
    assert check_axis_codes(mixed, where="orientation") == codes


@pytest.mark.parametrize(
    "value", ["RRS", "RLS", "APS", "RA", "XYZ", "RASX", "", "R A", 5, None, ("R", "A", "S"), b"RAS"]
)
def test_a_bad_code_is_refused_with_where_and_what_was_found(value: object) -> None:
    with pytest.raises(ValueError) as caught:
        check_axis_codes(value, where="target_orientation")  # type: ignore[arg-type]
    message = str(caught.value)
    assert "target_orientation" in message
    assert repr(value) in message
    assert "expected" in message


@pytest.mark.parametrize(("source", "target"), [("RRS", "RAS"), ("RAS", "RA"), ("RAS", 5), ("XYZ", "XYZ")])
def test_a_reorientation_between_bad_codes_is_refused(source: object, target: object) -> None:
    with pytest.raises(ValueError, match="expected"):
        Reorientation.between(source, target)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------- affines


def test_hand_worked_axis_codes() -> None:
    assert axis_codes(np.eye(4)) == "RAS"
    assert axis_codes(np.diag([-0.7, -0.7, 3.0, 1.0])) == "LPS"  # the DICOM patient convention
    # Column 0 points along +y, column 1 along +z, column 2 along +x.
    assert axis_codes(_affine(np.array([[0.0, 0.0, 2.0], [1.0, 0.0, 0.0], [0.0, 5.0, 0.0]]))) == "ASR"
    # An oblique affine: voxel axis 0 is mostly +x but tilted 30 degrees toward -y.
    tilted = np.array(
        [[math.cos(math.pi / 6), 0.0, 0.0], [-math.sin(math.pi / 6), 0.0, 1.0], [0.0, 1.0, 0.0]]
    )
    assert axis_codes(_affine(tilted)) == "RSA"
    # Strong shears: column 1 is mostly along x, but x is taken by column 0; the closest orthonormal
    # matrix (nibabel's io_orientation) gives y, where a bare argmax per column would say "RRS".
    for sheared in (
        [[1.0, 0.9, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 1.0]],
        [[1, 1.2, 0], [0, 0.8, 0.3], [0.2, 0, 1]],
    ):
        affine = _affine(np.array(sheared, dtype=float))
        assert "".join(aff2axcodes(affine)) == "RAS"
        assert axis_codes(affine) == "RAS"


@pytest.mark.parametrize("codes", ALL_CODES)
def test_axis_codes_of_every_orientation_match_nibabel(codes: str) -> None:
    affine = _affine(_code_matrix(codes) @ np.diag([0.8, 1.5, 4.0]), origin=(-90.0, 12.0, 40.0))
    assert "".join(aff2axcodes(affine)) == codes  # the construction, checked by nibabel
    assert axis_codes(affine) == codes
    assert axis_codes(affine[:3, :3]) == codes
    assert axis_codes(affine[:3, :]) == codes


rotation_axes = st.tuples(*[st.floats(-1.0, 1.0, allow_nan=False)] * 3).map(np.array)
tilts = st.floats(-math.radians(30.0), math.radians(30.0), allow_nan=False)
zoom_triples = st.tuples(*[st.floats(0.2, 8.0, allow_nan=False)] * 3)
shears = st.tuples(*[st.floats(-0.15, 0.15, allow_nan=False)] * 3)
origins = st.tuples(*[st.floats(-300.0, 300.0, allow_nan=False)] * 3)


def _oblique(
    codes: str,
    axis: np.ndarray,
    angle: float,
    zooms: tuple[float, float, float],
    shear: tuple[float, float, float],
    origin: tuple[float, float, float],
) -> np.ndarray:
    """A scanner-like affine of orientation ``codes``: rotated (< 30 degrees), sheared and scaled."""
    sheared = np.array([[1.0, shear[0], shear[1]], [0.0, 1.0, shear[2]], [0.0, 0.0, 1.0]])
    rotation = _rotation(axis, angle) if np.linalg.norm(axis) > 0.1 else np.eye(3)
    return _affine(rotation @ _code_matrix(codes) @ sheared @ np.diag(zooms), origin)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(ALL_CODES), rotation_axes, tilts, zoom_triples, shears, origins)
def test_axis_codes_of_an_oblique_affine_match_nibabel(
    codes: str,
    axis: np.ndarray,
    angle: float,
    zooms: tuple[float, float, float],
    shear: tuple[float, float, float],
    origin: tuple[float, float, float],
) -> None:
    affine = _oblique(codes, axis, angle, zooms, shear, origin)
    expected = "".join(aff2axcodes(affine))
    assert expected == codes  # the generator keeps each voxel axis closest to its intended world axis
    assert axis_codes(affine) == expected


@pytest.mark.parametrize(
    "matrix",
    [
        np.zeros((3, 3)),
        np.diag([1.0, 0.0, 1.0]),  # a zero column
        np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),  # two columns along the same axis
        np.array([[1.0, 2.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 1.0]]),  # rank 2, no zero column
        np.diag([1.0, math.nan, 1.0]),
        np.diag([math.inf, 1.0, 1.0]),
    ],
)
def test_a_singular_or_non_finite_affine_has_no_codes(matrix: np.ndarray) -> None:
    assert axis_codes(_affine(matrix)) is None
    assert axis_codes(matrix) is None


# ------------------------------------------------------------------------------------ reorientation


def test_hand_worked_ras_to_lps() -> None:
    arr = np.arange(24, dtype=np.int16).reshape(SHAPE)
    r = Reorientation.between("RAS", "LPS")
    assert (r.axes, r.flips) == ((0, 1, 2), (True, True, False))
    np.testing.assert_array_equal(r.apply(arr), arr[::-1, ::-1, :])
    assert r.shape(SHAPE) == SHAPE and r.spacing((1.0, 2.0, 3.0)) == (1.0, 2.0, 3.0)
    # x: 10 + 2 * (1 - j0) = 12 - 2 j0; y: 20 + 3 * (2 - j1) = 26 - 3 j1; z unchanged.
    stored_affine = _affine(np.diag([2.0, 3.0, 4.0]), origin=(10.0, 20.0, 30.0))
    expected = [[-2.0, 0.0, 0.0, 12.0], [0.0, -3.0, 0.0, 26.0], [0.0, 0.0, 4.0, 30.0], [0.0, 0.0, 0.0, 1.0]]
    np.testing.assert_allclose(r.affine(stored_affine, SHAPE), expected)
    assert r.stored_slice(0, 0, SHAPE) == (0, 1)  # the leftmost slice is the last stored one
    assert r.stored_slice(1, 2, SHAPE) == (1, 0)
    assert r.stored_slice(2, 1, SHAPE) == (2, 1)


def test_hand_worked_ras_to_sar() -> None:
    arr = np.arange(24, dtype=np.int16).reshape(SHAPE)
    r = Reorientation.between("RAS", "SAR")
    assert (r.axes, r.flips) == ((2, 1, 0), (False, False, False))
    np.testing.assert_array_equal(r.apply(arr), arr.transpose(2, 1, 0))
    assert r.shape(SHAPE) == (4, 3, 2) and r.shape((2, 3, 4, 5)) == (4, 3, 2, 5)
    assert r.spacing((1.0, 2.0, 3.0)) == (3.0, 2.0, 1.0)
    assert r.stored_slice(0, 3, SHAPE) == (2, 3)
    assert r.stored_slice(2, 1, SHAPE) == (0, 1)


def test_hand_worked_psr_to_ras() -> None:
    # Stored axis 0 runs posterior, axis 1 superior, axis 2 right: out[j0, j1, j2] = arr[1 - j1, j2, j0].
    arr = np.arange(24, dtype=np.float32).reshape(SHAPE)
    r = Reorientation.between("PSR", "RAS")
    assert (r.source, r.target, r.axes, r.flips) == ("PSR", "RAS", (2, 0, 1), (False, True, False))
    out = r.apply(arr)
    np.testing.assert_array_equal(out, arr.transpose(2, 0, 1)[:, ::-1, :])
    assert out.dtype == arr.dtype
    assert r.shape(SHAPE) == (4, 2, 3) and r.shape((2, 3, 4, 5)) == (4, 2, 3, 5)
    assert r.spacing((1.0, 2.0, 3.0)) == (3.0, 1.0, 2.0)
    assert r.stored_slice(0, 3, SHAPE) == (2, 3)
    assert r.stored_slice(1, 0, SHAPE) == (0, 1)
    assert r.stored_slice(2, 2, SHAPE) == (1, 2)
    # A stored slice arr[:, k, :] has dims (P, R); the reoriented axial slice has dims (R, A).
    np.testing.assert_array_equal(r.plane(arr[:, 2, :], 2), arr[:, 2, :].T[:, ::-1])
    # A stored slice arr[:, :, k] has dims (P, S); the reoriented sagittal slice has dims (A, S).
    np.testing.assert_array_equal(r.plane(arr[:, :, 3], 0), arr[:, :, 3][::-1, :])
    channels = np.stack([arr, -arr], axis=-1)
    np.testing.assert_array_equal(
        r.plane(channels[:, 1, :], 2), channels[:, 1, :].transpose(1, 0, 2)[:, ::-1]
    )
    # Columns (0, -2, 0), (0, 0, 3), (4, 0, 0): x = 10 + 4 j0, y = 20 - 2 (1 - j1) = 18 + 2 j1, z = 30 + 3 j2.
    stored_affine = _affine(
        np.array([[0.0, 0.0, 4.0], [-2.0, 0.0, 0.0], [0.0, 3.0, 0.0]]), (10.0, 20.0, 30.0)
    )
    assert axis_codes(stored_affine) == "PSR"
    expected = [[4.0, 0.0, 0.0, 10.0], [0.0, 2.0, 0.0, 18.0], [0.0, 0.0, 3.0, 30.0], [0.0, 0.0, 0.0, 1.0]]
    np.testing.assert_allclose(r.affine(stored_affine, SHAPE), expected)
    np.testing.assert_allclose(r.affine(stored_affine, (2, 3, 4, 5)), expected)  # channels change nothing


def test_codes_are_normalised_and_identity_is_a_no_op() -> None:
    r = Reorientation.between("ras", "Ras")
    assert (r.source, r.target) == ("RAS", "RAS")
    assert r.is_identity and (r.axes, r.flips) == ((0, 1, 2), (False, False, False))
    arr = np.arange(48.0).reshape(2, 3, 4, 2)
    np.testing.assert_array_equal(r.apply(arr), arr)
    np.testing.assert_array_equal(r.invert(arr), arr)
    assert not Reorientation.between("RAS", "RAI").is_identity
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.target = "LPS"  # type: ignore[misc]


@pytest.mark.parametrize("source", ALL_CODES)
def test_every_reorientation_matches_nibabel(source: str) -> None:
    arr3 = np.arange(24, dtype=np.int32).reshape(SHAPE)
    arr4 = np.stack([arr3, 100 + arr3, 200 + arr3], axis=-1)
    for target in ALL_CODES:
        r = Reorientation.between(source, target)
        ornt = _ornt(source, target)
        # ornt[i] = (reoriented axis, +-1) of stored axis i.
        axes = tuple(int(np.flatnonzero(ornt[:, 0] == t)[0]) for t in range(3))
        assert r.axes == axes, (source, target)
        assert r.flips == tuple(bool(ornt[i, 1] == -1) for i in axes), (source, target)
        assert r.is_identity == (source == target)
        for arr in (arr3, arr4):
            expected = apply_orientation(arr, ornt)
            out = r.apply(arr)
            np.testing.assert_array_equal(out, expected, err_msg=f"{source} -> {target}")
            assert out.shape == expected.shape == r.shape(arr.shape)
            back = r.invert(out)
            assert back.shape == arr.shape
            np.testing.assert_array_equal(back, arr)
            np.testing.assert_array_equal(Reorientation.between(target, source).apply(out), arr)
        assert r.spacing(SPACING) == tuple(SPACING[a] for a in axes)


@pytest.mark.parametrize("source", ALL_CODES)
def test_slices_of_the_stored_array_are_the_reoriented_slices(source: str) -> None:
    arr3 = np.arange(24).reshape(SHAPE)  # each value names its stored voxel
    arr4 = np.stack([arr3, -arr3], axis=-1)
    for target in ALL_CODES:
        r = Reorientation.between(source, target)
        out = r.apply(arr3)
        for axis in range(3):
            for index in range(out.shape[axis]):
                s, k = r.stored_slice(axis, index, SHAPE)
                # Independently: the stored coordinate that is constant over the reoriented slice.
                stored = np.unravel_index(np.take(out, index, axis=axis), SHAPE)
                constant = [(a, int(c.flat[0])) for a, c in enumerate(stored) if np.all(c == c.flat[0])]
                assert constant == [(s, k)], (source, target, axis, index)
                for arr in (arr3, arr4):
                    assert r.stored_slice(axis, index, arr.shape) == (s, k)
                    np.testing.assert_array_equal(
                        r.plane(np.take(arr, k, axis=s), axis),
                        np.take(r.apply(arr), index, axis=axis),
                        err_msg=f"{source} -> {target}, axis {axis}, index {index}",
                    )


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(ALL_CODES),
    st.sampled_from(ALL_CODES),
    rotation_axes,
    tilts,
    zoom_triples,
    shears,
    origins,
)
def test_the_reoriented_affine_matches_nibabel_and_keeps_every_voxel_in_place(
    source: str,
    target: str,
    axis: np.ndarray,
    angle: float,
    zooms: tuple[float, float, float],
    shear: tuple[float, float, float],
    origin: tuple[float, float, float],
) -> None:
    stored_affine = _oblique(source, axis, angle, zooms, shear, origin)
    assert axis_codes(stored_affine) == source
    r = Reorientation.between(source, target)
    result = r.affine(stored_affine, SHAPE)
    assert result.shape == (4, 4)
    ornt = _ornt(source, target)
    image = nib.Nifti1Image(np.zeros(SHAPE, dtype=np.float32), stored_affine)
    np.testing.assert_allclose(result, image.as_reoriented(ornt).affine, atol=1e-9)
    np.testing.assert_allclose(result, stored_affine @ inv_ornt_aff(ornt, SHAPE), atol=1e-9)
    assert axis_codes(result) == target
    np.testing.assert_allclose(voxel_sizes(result), r.spacing(tuple(voxel_sizes(stored_affine))))
    # Each voxel of the reoriented array sits at the world point it had in the stored array.
    out = r.apply(np.arange(24).reshape(SHAPE))
    reoriented = np.array(list(np.ndindex(out.shape)), dtype=float)  # (24, 3), C order like out.ravel()
    stored = np.stack(np.unravel_index(out.ravel(), SHAPE), axis=1).astype(float)
    ones = np.ones((24, 1))
    np.testing.assert_allclose(
        (result @ np.hstack([reoriented, ones]).T)[:3],
        (stored_affine @ np.hstack([stored, ones]).T)[:3],
        atol=1e-9,
    )


def test_the_module_does_not_import_nibabel() -> None:
    tree = ast.parse(inspect.getsource(orientation))
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    imported += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert not [name for name in imported if re.match(r"nibabel\b", name)]
