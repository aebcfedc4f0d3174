"""Entry point of the PyInstaller bundle: the same as the `stemgui` command.

A frozen app has no Python interpreter, so `sys.executable` is the bundle's own program. Code that starts
a child as `sys.executable -m stemgui ARGS` (the app's fine-tune dock does) therefore runs this program with
`-m stemgui ARGS`: drop that prefix so the child runs `stemgui ARGS` as intended.
"""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    if getattr(sys, "frozen", False) and sys.argv[1:3] == ["-m", "stemgui"]:
        del sys.argv[1:3]
    from stemgui.cli import main

    raise SystemExit(main())
