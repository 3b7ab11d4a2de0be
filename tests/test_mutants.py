"""The mutation check of proofs_checks.mutants (issue 10, item 5).

Fast part (CI): every mutant's search string occurs exactly once in the current source (a refactor that moves the
code must re-anchor the mutant, not silently drop it), and the tests each mutant names exist. Slow part
(``-m slow``): every mutant, applied to a temporary copy, makes its pytest selection fail. Deterministic apart
from the statistical tests each mutant runs, whose false-fail rates are stated in their own files.
"""
import re

import pytest

from proofs_checks import mutants
from proofs_checks.mutants import MUTANTS, ROOT, Mutant, apply_count, run_mutant

pytestmark = pytest.mark.mutants


def test_mutant_names_are_unique_and_documented():
    names = [m.name for m in MUTANTS]
    assert len(names) == len(set(names)) and len(names) >= 12
    for m in MUTANTS:
        assert m.description and m.tests and m.search != m.replace, m.name


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_mutant_applies_exactly_once(mutant):
    count = apply_count(mutant)
    assert count == 1, (f"{mutant.name}: search string found {count} times in {mutant.path}; the code moved, "
                        "re-anchor the mutant in proofs_checks/mutants.py")


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_mutant_tests_exist(mutant):
    for node in mutant.tests:
        path, _, name = node.partition("::")
        source = (ROOT / path).read_text()
        if name:
            assert re.search(rf"^def {re.escape(name)}\(", source, re.MULTILINE), f"{mutant.name}: no test {node}"
    for spec in mutant.claims:
        module, _, attr = spec.partition(":")
        source = (ROOT / (module.replace(".", "/") + ".py")).read_text()
        assert re.search(rf"^{re.escape(attr)} = ", source, re.MULTILINE), f"{mutant.name}: no claim {spec}"


def test_a_mutant_that_does_not_apply_is_reported_not_run():
    stale = Mutant("stale", "search string that is nowhere", "kdetheory/amm.py", "no such text\n", "x", ("tests",))
    record = run_mutant(stale)
    assert record["applies"] is False and record["count"] == 0 and record["caught"] is None


def test_cli_check_and_list(capsys):
    assert mutants.main(["--list"]) == 0
    assert "hbe_bias" in capsys.readouterr().out
    assert mutants.main(["--check"]) == 0
    assert f"{len(MUTANTS)} of {len(MUTANTS)} mutants apply" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        mutants.main(["no_such_mutant"])


def test_run_mutant_rejects_bad_input():
    with pytest.raises(TypeError, match="mutant="):
        run_mutant("hbe_bias")


@pytest.mark.slow
@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_every_mutant_is_caught(mutant):
    record = run_mutant(mutant)
    assert record["applies"], f"{mutant.name} does not apply"
    assert record["caught"], (f"{mutant.name} survived its tests {mutant.tests}:\n"
                              f"{record.get('output_tail', '')}")
