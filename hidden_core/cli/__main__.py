import sys

from hidden_core.cli import main

sys.exit(main())
