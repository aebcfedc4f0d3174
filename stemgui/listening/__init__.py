"""Listening tests: MUSHRA (ITU-R BS.1534-3) and MOS/ACR (ITU-T P.800 style) on separated stems.

Qt-free: `config` reads the TOML definition, `conditions` cuts, filters and loudness-matches excerpts,
`prepare` renders a test folder once (`stemgui listening-test create`), `design` gives each listener their
random but reproducible order, `store` keeps the results in SQLite, `stats` and `report` turn them into
intervals, plots and CSV (`stemgui listening-test report`). The app's test window is `stemgui.gui.listening`.
"""
