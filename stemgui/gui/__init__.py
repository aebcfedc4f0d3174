"""stemgui.gui"""
