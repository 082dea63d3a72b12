"""check_option: exact choices pass, anything else fails naming the field, the choices and the closest."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inpaintssl.options import check_option, closest_option, format_choices

CHOICES = ("warmup_cosine", "step_decay", "constant")


@given(choice=st.sampled_from(CHOICES))
def test_a_valid_choice_is_returned(choice: str) -> None:
    assert check_option(choice, CHOICES, field="optim.schedule") == choice


@given(value=st.text(max_size=20).filter(lambda v: v not in CHOICES))
def test_anything_else_names_field_value_and_every_choice(value: str) -> None:
    with pytest.raises(ValueError) as info:
        check_option(value, CHOICES, field="optim.schedule")
    message = str(info.value)
    assert message.startswith(f"optim.schedule={value!r} is not a valid option")
    assert "'warmup_cosine', 'step_decay' or 'constant'" in message


@given(choice=st.sampled_from(CHOICES), data=st.data())
def test_one_changed_letter_suggests_the_choice(choice: str, data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(choice) - 1))
    letter = data.draw(st.sampled_from("xqz"))
    typo = choice[:at] + letter + choice[at + 1 :]
    if typo == choice:
        return
    with pytest.raises(ValueError, match=re.escape(f"did you mean {choice!r}?")):
        check_option(typo, CHOICES, field="optim.schedule")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("CPU", "cpu"), ("cdua", "cuda"), ("validation", None), ("gpu", "cpu"), ("zzzzzz", None)],
)
def test_closest_option_hand_worked(value: str, expected: str | None) -> None:
    assert closest_option(value, ("auto", "cpu", "cuda")) == expected


def test_case_differences_are_refused_with_the_right_spelling() -> None:
    with pytest.raises(ValueError, match=r"device='CPU' .* did you mean 'cpu'\?"):
        check_option("CPU", ("auto", "cpu"), field="device")


def test_non_string_and_custom_error_type() -> None:
    class DataProblemError(ValueError):
        pass

    expected = r"split must be a string, one of 'train' or 'val'; found int 3"
    with pytest.raises(DataProblemError, match=expected):
        check_option(3, ("train", "val"), field="split", error=DataProblemError)


def test_format_choices() -> None:
    assert format_choices([]) == "nothing"
    assert format_choices(["a"]) == "'a'"
    assert format_choices(["a", "b", "c"]) == "'a', 'b' or 'c'"
