import sys

from scalewise.cli import main

sys.exit(main())
