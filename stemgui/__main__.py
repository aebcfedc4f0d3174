"""`python -m stemgui` is the same as the `stemgui` command."""

from stemgui.cli import main

raise SystemExit(main())
