"""`python -m smartserver_agent`: the same as the `smartserver-agent` command."""

import sys

from .cli import main

sys.exit(main())
