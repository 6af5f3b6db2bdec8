"""`python -m gateway_devkit.demo`: the same as gateway-demo."""

import sys

from gateway_devkit.demo.main import main

if __name__ == "__main__":
    sys.exit(main())
