"""`python -m gateway_devkit.bench`: the same as gateway-bench."""

import sys

from gateway_devkit.bench.main import main

if __name__ == "__main__":
    sys.exit(main())
