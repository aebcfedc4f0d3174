"""stemgui.eval"""
