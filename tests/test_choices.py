"""check_choice: the one check behind every "value must be one of ..." setting."""

import pytest

from iou_aware.utils import check_choice


def test_a_valid_choice_is_returned():
    assert check_choice("MODEL.LSNET.TASK", "box", ("box", "contour")) == "box"


def test_a_bad_choice_names_the_key_the_value_and_the_allowed_values():
    with pytest.raises(ValueError) as error:
        check_choice("MODEL.LSNET.TASK", "boxes", ["box", "contour", "keypoint"])
    assert str(error.value) == "MODEL.LSNET.TASK = 'boxes'; use one of ('box', 'contour', 'keypoint')."


def test_the_package_has_no_other_copy_of_the_check(repo_root):
    """Every "use one of" / "expected one of" message of the package comes from check_choice."""
    import pathlib

    package = pathlib.Path(repo_root) / "projects" / "iou_aware"
    copies = [
        f"{path.relative_to(package)}:{number}"
        for path in package.rglob("*.py")
        if path.name != "choices.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "one of {" in line and ("raise" in line or 'f"' in line)
    ]
    assert copies == []
