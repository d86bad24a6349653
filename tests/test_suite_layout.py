"""The suite's own shape: shared helpers live in tests/helpers.py and fixtures in conftest, so no file under
tests/ imports a test module or conftest (pytest loads those; importing one runs it twice and ties tests
together)."""
import ast

from tests.helpers import ROOT


def imported_modules(path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ("tests." if node.level else "") + (node.module or "")
            found |= {base} | {f"{base}.{alias.name}".lstrip(".") for alias in node.names}
    return found


def forbidden(module: str) -> bool:
    last = module.rsplit(".", 1)[-1]
    return module.split(".")[0] in ("tests", "conftest") and (last.startswith("test_") or last == "conftest")


def test_no_file_under_tests_imports_a_test_module_or_conftest():
    files = sorted((ROOT / "tests").rglob("*.py"))
    assert len(files) > 20
    offending = {f"{path.relative_to(ROOT)} imports {module}"
                 for path in files for module in imported_modules(path) if forbidden(module)}
    assert offending == set()


def test_the_layout_check_sees_the_imports_it_forbids(tmp_path):
    """The check above must be able to fail: each way of importing a test module is caught."""
    for line in ("from tests.test_jobs import job_row", "from tests import conftest", "import tests.test_errors",
                 "from .test_campaigns import box", "from . import test_campaigns", "from conftest import ROOT"):
        sample = tmp_path / "sample.py"
        sample.write_text(line + "\n")
        assert any(forbidden(m) for m in imported_modules(sample)), line
    sample.write_text("from tests.helpers import wait_until\nfrom tests import images\n")
    assert not any(forbidden(m) for m in imported_modules(sample))
