"""YAML experiment file -> typed, validated `Experiment`; CLI overrides; grid expansion into cells.

This package knows nothing of models or torch: it only checks that a configuration is well formed,
so that every mistake is reported in one line (naming the field and what is allowed) before anything
expensive happens. One module per concern: `names` (allowed values, precisions, the error type,
path resolution), `validation` (shared checks), `spec` (the schema, each section validating itself),
`loading` (typed building, YAML, `load_experiment`), `overrides` (CLI flags), `cells` (grid
expansion, cell identity and labels, shards). Everything is importable from the package itself.
"""

from .cells import *  # noqa: F401,F403
from .loading import *  # noqa: F401,F403
from .names import *  # noqa: F401,F403
from .overrides import *  # noqa: F401,F403
from .spec import *  # noqa: F401,F403
from .validation import *  # noqa: F401,F403
