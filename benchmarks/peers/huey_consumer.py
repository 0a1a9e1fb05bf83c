"""``huey_consumer``, patched by gevent first when its workers are greenlets (``-k greenlet``).

huey's own script leaves the patching to the caller and warns when it was not done.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    if "greenlet" in sys.argv:
        from gevent import monkey

        monkey.patch_all()
    from huey.bin.huey_consumer import consumer_main

    consumer_main()
