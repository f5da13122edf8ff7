"""Keep pandas out of the pipeline's own processes.

pyarrow imports pandas, when it is installed, on its first conversion of Python objects
(`pa.array`, `Table.from_pylist`), only to check whether they are DataFrames. That import is
a large part of each process's start-up, and nothing in the pipeline uses pandas.
`skip_pandas()` makes `import pandas` fail in this process, which pyarrow and polars take as
"pandas is not installed".

It is called by the `pipeline` command and by each worker process as it starts, never on
import, so a program that imports the package keeps its pandas.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType


class _NoPandas(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname == "pandas" or fullname.startswith("pandas."):
            raise ModuleNotFoundError("pandas is not used by the pipeline", name=fullname)
        return None


def skip_pandas() -> None:
    if "pandas" in sys.modules or any(isinstance(f, _NoPandas) for f in sys.meta_path):
        return  # already imported by the caller (keep it), or already skipped
    sys.meta_path.insert(0, _NoPandas())
