"""The README's findings tables are exactly what the committed JSON results give."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("run_findings", ROOT / "experiments" / "run_findings.py")
run_findings = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_findings)


@pytest.mark.parametrize("key", sorted(run_findings.TABLES))
def test_readme_table_matches_results(key):
    if not any(run_findings.load(name) for name in run_findings.TABLES[key]):
        pytest.skip(f"no results for table {key} yet")
    readme = (ROOT / "README.md").read_text()
    assert run_findings.table(key) in readme, f"README table {key} differs from results/findings"


def test_readme_tuning_table_matches_results():
    assert run_findings.tuning_table() in (ROOT / "README.md").read_text()
