"""Great Expectations gate over the pipeline's tables (used by the ``validate`` stage).

GE 1.x phones home (posthog) unless told not to, and reads the setting when it is first imported;
every module of this package that imports it does so after this file has run. The machine running
``dvc repro`` may be offline, and a validation gate has no business sending analytics.
"""

import os

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
