import sys

from openlineage_emitter.cli import main

sys.exit(main())
