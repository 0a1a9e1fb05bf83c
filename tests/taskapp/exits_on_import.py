"""A module no profile may make anyone import: importing it leaves a mark, then exits.

Validating a profile's pool in the admin, and a worker refusing that pool, must never import
it. The mark goes to the file named by ``DJWORKER_IMPORT_CANARY``, so a test can tell that a
worker subprocess did not import it either.
"""

import os
from pathlib import Path

_marker = os.environ.get("DJWORKER_IMPORT_CANARY")
if _marker:
    Path(_marker).write_text("imported")
raise SystemExit("tests.taskapp.exits_on_import was imported")
