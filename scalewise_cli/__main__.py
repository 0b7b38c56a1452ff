import sys

from scalewise_cli import main

sys.exit(main())
