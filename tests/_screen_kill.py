"""Run a screen slowly (one condition per chunk, a pause after each) so that a test can kill it.

Usage: ``python tests/_screen_kill.py SPEC.toml OUT DELAY_S`` on the network
``random_network(40, 5, seed=3)`` (the one tests/test_screen.py builds), in process.
"""

import sys
import time

from brainfly.screens import screen
from brainfly.testing.networks import random_network


def main() -> None:
    spec, out, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
    net, _ = random_network(40, 5, seed=3)
    screen(spec, data=net, out=out, scheduler="in-process", chunk_conditions=1,
           progress=lambda done, total: time.sleep(delay))


if __name__ == "__main__":
    main()
