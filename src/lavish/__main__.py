import sys

from lavish.cli.main import main

sys.exit(main())
