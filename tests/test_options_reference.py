"""docs/options.md is made from the declarations and must stay current."""
import pathlib

from pagi_rsm import options_reference

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "options.md"


def test_docs_options_md_is_current():
    assert DOC.read_text(encoding="utf-8") == options_reference.markdown(), (
        "docs/options.md is out of date; write it again with: python -c \"from pagi_rsm "
        "import options_reference; options_reference.write()\"")
