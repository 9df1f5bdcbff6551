"""The README's Python examples run as written.

A block right after the marker ``<!-- tests/test_load_run.py runs this block -->`` needs a
trained main-job run: tests/test_load_run.py runs it on a tiny run instead.
"""
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs():
    found = re.findall(r"(<!-- tests/test_load_run.py runs this block -->\n)?```python\n(.*?)```",
                       README.read_text(encoding="utf-8"), re.S)
    blocks = [block for marker, block in found if not marker]
    assert blocks and len(found) - len(blocks) == 1, "the README's python examples moved"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})
