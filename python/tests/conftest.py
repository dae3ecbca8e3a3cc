"""pytest configuration for bnorm's Python suite (run by CTest as `python_pytest`).

A suite that silently tests nothing must not pass:
- `import bnorm` failing is an error at collection, never a skip;
- with BNORM_EXPECT_TORCH_OPS=1 (CTest sets it when the operator was built) torch must import and
  bnorm.torch must use the operator, or the session fails;
- without torch, only the torch tests skip (the `torch_only` fixture says why in the summary).
"""

import os

import pytest

import bnorm  # noqa: F401  (an ImportError here fails the session: the build is broken)

try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:  # pragma: no cover - a machine without python3-torch
    HAVE_TORCH = False


def pytest_configure(config):
    if os.environ.get("BNORM_EXPECT_TORCH_OPS") == "1":
        if not HAVE_TORCH:
            raise pytest.UsageError("BNORM_EXPECT_TORCH_OPS=1 but torch does not import")
        import bnorm.torch as bt

        if not bt.HAVE_OPERATOR:
            raise pytest.UsageError(f"the bnorm torch operator was built but is not used: "
                                    f"{bt.OPERATOR_ERROR}")


def pytest_sessionfinish(session, exitstatus):
    # pytest's own exit status 5 (no tests collected) already fails CTest; a run where every test
    # was skipped or deselected is no better.
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and exitstatus == 0 and not reporter.stats.get("passed"):
        session.exitstatus = 1
