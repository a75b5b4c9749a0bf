"""``python -m lorasoups.pipeline``: see :mod:`lorasoups.pipeline.cli`."""
import sys

from lorasoups.pipeline.cli import main

sys.exit(main())
