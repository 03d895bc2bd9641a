"""Child script for tests/reliability/test_shutdown.py (not a test module).

Usage: python exit_child.py {exit|idle|busy}
Starts the shared default pool, makes one call, prints the engine-process PIDs, then:
``exit`` returns from the script without shutting the pool down; ``idle`` prints READY and
sleeps; ``busy`` prints READY and makes a long call (the parent then sends a signal).
"""

import sys
import time

from helium_lc import HeliumChatModel
from helium_lc.engine.default_pool import get_default_pool

mode = sys.argv[1]
pool = get_default_pool()
print("answer:", HeliumChatModel(max_tokens=4).invoke("hi").content, flush=True)
print("ENGINE_PIDS", " ".join(str(p) for w in pool.workers for p in w.engine_processes()), flush=True)
if mode == "exit":
    sys.exit(0)
print("READY", flush=True)
if mode == "busy":
    HeliumChatModel(max_tokens=4000).invoke("Write a very long story about a lighthouse keeper.")
time.sleep(600)
